//! Finding Java and an Apache ZooKeeper installation, or saying how to install them.

use std::env;
use std::path::{Path, PathBuf};

use super::HarnessError;

/// The Debian package's jar (`apt-get install zookeeper`), whose manifest lists its
/// dependencies' jars.
const DEBIAN_JAR: &str = "/usr/share/java/zookeeper.jar";
/// An SLF4J binding from Debian's `libslf4j-java`, so the server's log reaches its log file.
const DEBIAN_SLF4J_BINDING: &str = "/usr/share/java/slf4j-simple.jar";
/// Netty's codec, which the server's TLS handler needs and the Debian jar's manifest omits:
/// without it every TLS handshake fails with `NoClassDefFoundError`.
const DEBIAN_NETTY_CODEC: &str = "/usr/share/java/netty-codec.jar";

/// Where ZooKeeper's jars are, when not found the default way.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A Java classpath with ZooKeeper's jars and their dependencies.
    Classpath(String),
    /// An unpacked Apache ZooKeeper release.
    Home(PathBuf),
}

/// How to start a ZooKeeper server: the `java` binary and the classpath.
#[derive(Debug, Clone)]
pub(super) struct Installation {
    pub(super) java: PathBuf,
    pub(super) classpath: String,
}

impl Installation {
    /// Finds Java (`JAVA_HOME`, else `PATH`) and ZooKeeper: `source` if given, else
    /// `ZOOKEEPER_CLASSPATH`, else `ZOOKEEPER_HOME`, else the Debian package.
    pub(super) fn locate(source: Option<&Source>) -> Result<Self, HarnessError> {
        let java = locate_java()?;
        let from_env = || match (env::var("ZOOKEEPER_CLASSPATH"), env::var_os("ZOOKEEPER_HOME")) {
            (Ok(classpath), _) if !classpath.is_empty() => Some(Source::Classpath(classpath)),
            (_, Some(home)) => Some(Source::Home(home.into())),
            _ => None,
        };
        let classpath = match source.cloned().or_else(from_env) {
            Some(Source::Classpath(classpath)) => classpath,
            Some(Source::Home(home)) => release_classpath(&home)?,
            None => debian_classpath()?,
        };
        Ok(Self { java, classpath })
    }
}

pub(super) fn locate_java() -> Result<PathBuf, HarnessError> {
    if let Some(home) = env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("java"))
        .find(|java| java.is_file())
        .ok_or_else(|| HarnessError::JavaMissing("no `java` in JAVA_HOME/bin or on PATH".into()))
}

impl Installation {
    /// Checks that the servers can serve TLS: that Netty's codec is on the classpath.
    pub(super) fn require_tls(&self) -> Result<(), HarnessError> {
        if self.classpath.split(':').any(|jar| jar.contains("netty-codec") || jar.contains("netty-all")) {
            return Ok(());
        }
        // A release's lib directory has it; the Debian package needs libnetty-java's.
        Err(HarnessError::TlsUnavailable(format!(
            "Netty's codec is not on the server's classpath ({DEBIAN_NETTY_CODEC} is missing)"
        )))
    }
}

fn release_classpath(home: &Path) -> Result<String, HarnessError> {
    let lib = home.join("lib");
    let jars: Vec<String> = std::fs::read_dir(&lib)
        .map_err(|e| {
            HarnessError::ZooKeeperMissing(format!(
                "ZOOKEEPER_HOME={}: cannot read {}: {e}",
                home.display(),
                lib.display()
            ))
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "jar"))
        .map(|path| path.display().to_string())
        .collect();
    if !jars.iter().any(|jar| jar.contains("zookeeper")) {
        return Err(HarnessError::ZooKeeperMissing(format!(
            "ZOOKEEPER_HOME={}: no zookeeper jar in {}",
            home.display(),
            lib.display()
        )));
    }
    // The release's conf directory carries its logging configuration.
    let mut classpath = vec![home.join("conf").display().to_string()];
    classpath.extend(jars);
    Ok(classpath.join(":"))
}

fn debian_classpath() -> Result<String, HarnessError> {
    if !Path::new(DEBIAN_JAR).is_file() {
        return Err(HarnessError::ZooKeeperMissing(format!("{DEBIAN_JAR} does not exist")));
    }
    let mut classpath = DEBIAN_JAR.to_owned();
    for jar in [DEBIAN_SLF4J_BINDING, DEBIAN_NETTY_CODEC] {
        if Path::new(jar).is_file() {
            classpath.push(':');
            classpath.push_str(jar);
        }
    }
    Ok(classpath)
}
