# Sourced by bench/run.sh and bench/instructions.sh (REPO_DIR set): which fulcrum binary a
# benchmark runs.
#
# fulcrum_bin prints FULCRUM_BIN if set, else target/release/fulcrum if it exists, else
# $CARGO_TARGET_DIR/release/fulcrum if that exists, else target/release/fulcrum (for the
# caller's "not built" message).
fulcrum_bin() {
  if [ -n "${FULCRUM_BIN:-}" ]; then echo "$FULCRUM_BIN"; return; fi
  if [ -x "$REPO_DIR/target/release/fulcrum" ]; then echo "$REPO_DIR/target/release/fulcrum"; return; fi
  if [ -n "${CARGO_TARGET_DIR:-}" ] && [ -x "$CARGO_TARGET_DIR/release/fulcrum" ]; then
    echo "$CARGO_TARGET_DIR/release/fulcrum"; return
  fi
  echo "$REPO_DIR/target/release/fulcrum"
}
