# The two commands of the README's quick start are `make demo` and `make test`; both install
# what is missing first (Debian packages through apt, Rust tools through cargo).

CARGO ?= cargo

.PHONY: deps demo test test-under-load lint doc unit msrv bench chaos model

deps:
	@./.ci/install-deps

## A local 3-node ZooKeeper ensemble, contenders taking FIFO turns, and a stale holder fenced off.
demo: deps
	$(CARGO) run --quiet --release --locked --example demo

## Everything CI checks: formatting, lints, docs, and every test against real ZooKeeper.
test: deps lint doc unit

## The test suite while two CPU hogs (stress-ng) run, as on a busy machine; RUNS=N repeats it.
test-under-load: deps
	@./.ci/under-load

# The features of Cargo.toml. Besides all of them, the library (and the tool, with `cli`) must
# build, lint and document with none (the default) and with each one alone: a user turns on
# only what they need. The tests and examples are linted with none too, as a bare `cargo test`
# builds them (their dev-dependency turns on `testing`, so the library alone goes first).
FEATURES := $(shell sed -n '/^\[features\]/,/^\[/s/^\([a-z0-9_-]*\) *=.*/\1/p' Cargo.toml)
# The oldest Rust that Cargo.toml's rust-version promises.
MSRV := $(shell sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --lib -- -D warnings
	$(CARGO) clippy --locked --all-targets -- -D warnings
	set -e; for feature in $(FEATURES); do \
		$(CARGO) clippy --locked --lib --bins --features $$feature -- -D warnings; \
	done
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

# Links to items of features that are off cannot resolve, so only the build with all features
# (the one docs.rs makes) checks links; the others check everything else.
doc:
	set -e; for feature in "" $(FEATURES); do \
		RUSTDOCFLAGS="-Dwarnings -Arustdoc::broken_intra_doc_links" \
			$(CARGO) doc --locked --no-deps --lib --features "$$feature"; \
	done
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --locked --no-deps --all-features

unit:
	$(CARGO) nextest run --locked --all-features --all-targets -E 'not test(/^model::engine::/)'
	ZK_MODEL_STATES=1000000 $(CARGO) test --release --locked --all-features --lib model::engine -- --test-threads 2
	$(CARGO) test --locked --all-features --doc

## Builds with the oldest Rust that Cargo.toml's rust-version promises. Not part of `make test`:
## CI's machines have one toolchain and cannot fetch another. Run it where rustup can.
msrv:
	@rustup run $(MSRV) rustc --version >/dev/null 2>&1 || { echo "the Rust $(MSRV) toolchain is missing: rustup toolchain install $(MSRV) --profile minimal" >&2; exit 1; }
	$(CARGO) +$(MSRV) check --locked --all-features --lib --bins

## Against Curator, kazoo, zookeeper-client and the raw floor, and TLS beside plaintext, in
## interleaved rounds; writes target/bench.json. `make bench ARGS="--only contended"` runs one benchmark.
bench: deps
	$(CARGO) build --quiet --release --locked --features cli --bin zk-recipes
	$(CARGO) run --quiet --release --locked --features tls --example bench -- $(ARGS)

## Faults against a 3-node ensemble for DURATION (default 10m): leader kills, quorum loss, frozen
## holders, partitions, connection resets, cancelled waits. SEED=N replays a fault schedule.
chaos: deps
	$(CARGO) run --quiet --release --locked --example chaos -- --duration $(or $(DURATION),10m) $(if $(SEED),--seed $(SEED))

## The model checker of the queue protocol at larger bounds (MODEL_STATES states per run,
## default 5 million, depth first): states explored, depth, time and each run's verdict.
model:
	ZK_MODEL_STATES=$(or $(MODEL_STATES),5000000) $(CARGO) test --release --locked --all-features --lib model::engine -- --nocapture --test-threads 2
