# syntax=docker/dockerfile:1
# One image for every pkgfarm service: `docker build -t pkgfarm:0.1.0 .`, then
# `docker run pkgfarm:0.1.0 depgraph|dispatcher|agent ...` (deploy/k8s uses it so).
# Pin NODE_IMAGE by digest for reproducible production builds.
ARG NODE_IMAGE=node:20-bookworm-slim

# build: the TypeScript compiler and the rest of the dev dependencies live only here.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY gen gen
COPY services services
RUN npx tsc -p . --outDir dist

# deps: production dependencies only, installed from the lock file.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# runtime: node, the compiled services, their production node_modules and the
# example tree (so the manifests build something out of the box). npm, npx,
# corepack and yarn are removed: nothing is installed or built at run time.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && mkdir -p /var/lib/pkgfarm \
 && chown 1000:1000 /var/lib/pkgfarm
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules node_modules
COPY --from=build /src/dist/gen dist/gen
COPY --from=build /src/dist/services dist/services
COPY examples examples
# The web status page's files, served as they are (no build step).
COPY services/web/static services/web/static
# The base image's "node" user, by number so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
ENTRYPOINT ["node", "dist/services/cli/main.js"]
