# A Redis image from the same Debian base as Skillbot's (Debian's redis-server package), for
# places that cannot pull docker.io/library/redis: scripts/container-smoke.sh builds it as
# skillbot-redis:bookworm and compose.yaml takes it through REDIS_IMAGE.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
