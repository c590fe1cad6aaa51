//! What every recipe handle holds — the session, the validated path, the data its nodes carry —
//! and the three ways a single-node recipe acquires: wait, wait with a deadline, or try.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::path::validate_recipe_path;
use crate::queue::{self, Holding, Patience, Role, Spec};
use crate::session::Session;

#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    pub(crate) session: Session,
    pub(crate) path: Arc<str>,
    pub(crate) data: Arc<[u8]>,
}

impl Recipe {
    /// A recipe on `path`, which must be a valid recipe path.
    pub(crate) fn new(session: &Session, path: &str) -> Result<Self, Error> {
        validate_recipe_path(path)?;
        Ok(Self { session: session.clone(), path: path.into(), data: Arc::new([]) })
    }

    pub(crate) fn set_data(&mut self, data: impl Into<Vec<u8>>) {
        self.data = data.into().into();
    }

    /// Contends in the recipe's directory until holding, or until `timeout` (if any) ran out.
    pub(crate) async fn wait(&self, role: Role, timeout: Option<Duration>) -> Result<Holding, Error> {
        let patience = timeout.map_or(Patience::Forever, Patience::For);
        self.wait_with(&self.spec(role), patience).await
    }

    /// [`wait`](Recipe::wait) without a deadline, calling `queued` once the node is in the
    /// queue.
    pub(crate) async fn wait_reporting(&self, role: Role, queued: &(dyn Fn() + Send + Sync)) -> Result<Holding, Error> {
        let spec = Spec { on_queued: Some(queued), ..self.spec(role) };
        self.wait_with(&spec, Patience::Forever).await
    }

    async fn wait_with(&self, spec: &Spec<'_>, patience: Patience) -> Result<Holding, Error> {
        let held = queue::acquire(&self.session, spec, patience).await?;
        Ok(held.expect("waiting ends holding or in an error, never in nothing"))
    }

    /// Holds only if the rule lets this contender proceed at once.
    pub(crate) async fn try_hold(&self, role: Role) -> Result<Option<Holding>, Error> {
        queue::acquire(&self.session, &self.spec(role), Patience::None).await
    }

    fn spec(&self, role: Role) -> Spec<'_> {
        Spec { dir: &self.path, role, data: &self.data, on_queued: None, requires: None, watch_holding: true }
    }
}
