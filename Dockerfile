# The ShadowCanary evaluator (and CLI): small, non-root, pinned base. Build: docker build -t shadowcanary .
# EXTRAS=evaluator,demo adds scikit-learn for the demo's traffic simulator (docker-compose's "traffic" profile).
FROM python:3.11.11-slim-bookworm AS build
ARG EXTRAS="evaluator"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY evaluators ./evaluators
COPY streams ./streams
RUN python -m venv /opt/shadowcanary \
 && /opt/shadowcanary/bin/pip install --no-compile ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="shadowcanary" \
      org.opencontainers.image.description="Event-driven evaluator for safe ML model rollouts on Kafka"
RUN groupadd --system --gid 10001 shadowcanary \
 && useradd --system --uid 10001 --gid shadowcanary --home-dir /var/lib/shadowcanary --create-home shadowcanary \
 && install -d -o shadowcanary -g shadowcanary /var/lib/shadowcanary/state
COPY --from=build /opt/shadowcanary /opt/shadowcanary
ENV PATH=/opt/shadowcanary/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/shadowcanary
EXPOSE 9464
ENTRYPOINT ["shadowcanary"]
CMD ["evaluate", "--state-dir", "/var/lib/shadowcanary/state", "--metrics-port", "9464"]
