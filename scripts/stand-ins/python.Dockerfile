# Stand-in for python:3.11-slim-bookworm where no image registry can be reached: Debian's own Python 3.11
# with venv. Built by scripts/base-images.sh on the debootstrapped Debian image; used only by the tests.
ARG DEBIAN_IMAGE=sketch-search-standin/debian:bookworm
# hadolint ignore=DL3006
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
