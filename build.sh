#!/usr/bin/env bash
# Bootstrapper: restores the local Cake tool and runs build.cake. Example: ./build.sh --target=Test
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet tool restore >/dev/null
exec dotnet tool run dotnet-cake build.cake "$@"
