#!/bin/sh
# `pip install` inside a Docker build stage. Where PyPI is reached through a TLS-intercepting proxy, the
# build passes that proxy's CA bundle as the build secret `pip_ca` (PIP_CA_BUNDLE in .env): it is mounted
# for the step only and never stored in a layer. Without the secret, pip uses its own certificates.
set -eu
if [ -s /run/secrets/pip_ca ]; then
  export PIP_CERT=/run/secrets/pip_ca
fi
exec pip install --no-cache-dir --disable-pip-version-check "$@"
