# shellcheck shell=bash
# Sourced by scripts/test, scripts/serve and .ci/run. Defines:
#   oms_root          absolute path of the repository
#   oms_ensure_venv   make sure $oms_root/.venv exists and holds the project installed editable
#                     with its dev extras; pip runs only when pyproject.toml changed since the
#                     last install (its SHA-256 is kept in .venv/.oms-installed).
# Needs Python >= 3.11: python3 on PATH, or OMS_PYTHON=/path/to/python3.11. Works without stdin.

oms_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

oms_find_python() {
    local candidate
    for candidate in ${OMS_PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "oms: Python >= 3.11 not found; install it or set OMS_PYTHON=/path/to/python3.11" >&2
    return 1
}

oms_ensure_venv() {
    local venv="$oms_root/.venv" python stamp wanted
    if [ ! -x "$venv/bin/python" ]; then
        python="$(oms_find_python)" || return 1
        echo "oms: creating .venv with $python" >&2
        "$python" -m venv "$venv" </dev/null || {
            echo "oms: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        }
    fi
    stamp="$venv/.oms-installed"
    wanted="$("$venv/bin/python" -c 'import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(), "dev")' "$oms_root/pyproject.toml")"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "oms: installing the project into .venv (pip install -e '.[dev]')" >&2
        rm -f "$stamp"
        "$venv/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
            -e "$oms_root[dev]" </dev/null
        printf '%s\n' "$wanted" >"$stamp"
    fi
}
