# gradserve: a small, non-root image running `gradserve serve` (no torch, no build tools).
#
#   docker build -t gradserve .
#   docker run -p 50051:50051 gradserve [gradserve serve flags...]
#
# Settings: `gradserve serve` flags after the image name, or GRADSERVE_* variables (-e). The
# health check probes GRADSERVE_PORT, so change the port with that variable, not with --port.
# BASE_IMAGE may also be a plain Debian image (python3 is installed when it is missing).
# EXTRAS=mkl adds the `mkl` extra (Intel MKL 2024.2, ~550 MB, and libgomp1): float products and
# exp/log/sin/tanh/... then equal torch's bits (README, "What differs from torch here").
ARG BASE_IMAGE=python:3.12-slim
ARG EXTRAS=

FROM ${BASE_IMAGE} AS base
# A plain Debian base has no Python; python:*-slim has one and skips this. The venv at /opt/venv
# makes the paths the same on both.
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log; \
    fi
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

FROM base AS build
# A CA bundle for pip behind a TLS-inspecting proxy, mounted at build time and not kept:
#   --build-arg PIP_CERT=/run/host-ca.crt -v "$SSL_CERT_FILE":/run/host-ca.crt:ro  (podman)
ARG PIP_CERT
ARG EXTRAS
COPY pyproject.toml README.md /src/
COPY protos /src/protos
COPY surface /src/surface
COPY engine /src/engine
COPY server /src/server
COPY client /src/client
RUN python3 -m venv /opt/venv \
    && if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && case "$EXTRAS" in ""|mkl) ;; *) echo "EXTRAS must be empty or mkl" >&2; exit 1;; esac \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "/src${EXTRAS:+[$EXTRAS]}" \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
    && find /opt/venv -name tests -path '*/numpy/*' -prune -exec rm -rf {} +

FROM base
ARG EXTRAS
# MKL's GNU OpenMP threading layer needs libgomp1 (slim bases lack it)
RUN if [ "$EXTRAS" = mkl ] && ! ldconfig -p | grep -q libgomp.so.1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log; \
    fi
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gradserve
USER gradserve
ENV GRADSERVE_HOST=0.0.0.0 \
    GRADSERVE_PORT=50051
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD gradserve health --target "127.0.0.1:${GRADSERVE_PORT}" --timeout 4 || exit 1
ENTRYPOINT ["gradserve", "serve"]
