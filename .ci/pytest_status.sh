# CI's reading of pytest's exit code (sourced by .ci/run; tests/test_ci.py runs it).
# pytest exits 5 when it collected no test: for this project that is a failure (a
# suite that runs nothing proves nothing), so it stays non-zero and says why.
ci_status() {
  local rc="$1"
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: CI fails" >&2
  fi
  echo "$rc"
}
