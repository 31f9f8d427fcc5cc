// Cross-references of the deployment files that no schema can see (dclint checks the compose file's form):
//   - every variable the compose file needs without a default is in deploy/compose/.env.example, and every
//     variable there is used;
//   - every NATS node of the compose file runs deploy/nats/cluster-node.conf and is given every QWEN_* variable
//     that file and auth.conf read; names are unique; the routes list every node at its route port with the route
//     password;
//   - every QwenNats service is given every node's client URL, Topology__Replicas = the number of nodes, and logs
//     in as a user of auth.conf with that user's password variable (the one the NATS nodes get);
//   - every image has a version tag; every bind mount's source exists (but the build outputs publish/ and models/), and so does every file a
//     setting names inside a mount (policy, golden sets, profiles);
//   - every Prometheus scrape target is a compose service listening on that port on a reachable address, with the
//     job names of deploy/prometheus/prometheus.yml (the alerts use them) and its rule files present;
//   - Grafana's datasource points at the Prometheus service, and its dashboard provider's folder holds the
//     project's dashboard;
//   - every systemd unit's EnvironmentFile has an example in deploy/systemd/env/, the NATS node's example sets every
//     variable the configuration reads, services log in as auth.conf users, and no example holds a real password.
// usage: node .ci/compose/check.mjs [compose file] (default deploy/compose/docker-compose.yml); exit 1 on a problem.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const composeFile = path.resolve(process.argv[2] ?? path.join(root, 'deploy/compose/docker-compose.yml'));
const composeDir = path.dirname(composeFile);
const problems = [];
const problem = (msg) => problems.push(msg);
const rel = (p) => path.relative(root, p);
const read = (p) => fs.readFileSync(p, 'utf8');

// --- environment files ---------------------------------------------------------------------------
function parseEnvFile(file) {
  const env = {};
  for (const line of read(file).split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2];
    if (/^'.*'$/.test(v) || /^".*"$/.test(v)) v = v.slice(1, -1);
    env[m[1]] = v;
  }
  return env;
}

// --- compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$ ---------
const interpolation = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;
function variablesIn(text) {
  const needed = new Set(); const all = new Set();
  for (const m of text.matchAll(interpolation)) {
    if (m[0] === '$$') continue;
    const name = m[1] ?? m[4];
    all.add(name);
    if (!m[2] || m[2].endsWith('?')) needed.add(name);
  }
  return { needed, all };
}
function interpolate(value, env) {
  if (typeof value === 'string') {
    return value.replace(interpolation, (whole, name, op, arg, bare) => {
      if (whole === '$$') return '$';
      const v = env[name ?? bare];
      if (op === ':-') return v ? v : arg;
      if (op === '-') return v ?? arg;
      return v ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)]));
  return value;
}

// --- the compose file -------------------------------------------------------------------------------
const composeText = read(composeFile);
const envExampleFile = path.join(composeDir, '.env.example');
const envExample = fs.existsSync(envExampleFile) ? parseEnvFile(envExampleFile) : (problem(`${rel(envExampleFile)} is missing`), {});
const { needed, all } = variablesIn(composeText.split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n'));
for (const v of needed) if (!(v in envExample)) problem(`compose: \${${v}} has no default and is not in ${rel(envExampleFile)}`);
for (const v of Object.keys(envExample)) if (!all.has(v)) problem(`${rel(envExampleFile)}: ${v} is not used by the compose file`);

const doc = YAML.parseDocument(composeText, { merge: true });
if (doc.errors.length) { console.error(`compose: not YAML: ${doc.errors[0].message}`); process.exit(1); }
const rawCompose = doc.toJS();
const compose = interpolate(rawCompose, envExample);
const services = compose.services ?? {};
const rawServices = rawCompose.services ?? {};
const envOf = (s) => {
  const e = services[s].environment ?? {};
  return Array.isArray(e) ? Object.fromEntries(e.map((x) => [x.split('=')[0], x.slice(x.indexOf('=') + 1)])) : e;
};
const rawEnvOf = (s) => rawServices[s].environment ?? {};
const commandOf = (s) => [].concat(services[s].command ?? []).join(' ');

// Bind mounts: [{ source (absolute host path), target, file (whether the source is a file) }]
const buildOutputs = [path.join(root, 'publish'), path.join(root, 'models')];
const isBuildOutput = (p) => buildOutputs.some((b) => p === b || p.startsWith(b + path.sep));
function mountsOf(s) {
  const mounts = [];
  for (const v of services[s].volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target];
    if (!source || !(source.startsWith('.') || source.startsWith('/'))) continue; // a named volume
    mounts.push({ source: path.resolve(composeDir, source), target });
  }
  return mounts;
}
// The host path behind a container path of service s, or null when no bind mount covers it.
function hostPath(s, containerPath) {
  let best = null;
  for (const m of mountsOf(s)) {
    if (containerPath === m.target || containerPath.startsWith(m.target.replace(/\/$/, '') + '/')) {
      if (!best || m.target.length > best.target.length) best = m;
    }
  }
  return best ? path.join(best.source, containerPath.slice(best.target.length)) : null;
}
for (const s of Object.keys(services)) {
  for (const m of mountsOf(s)) {
    if (!isBuildOutput(m.source) && !fs.existsSync(m.source)) problem(`compose: ${s} mounts ${rel(m.source)}, which does not exist`);
  }
  // A setting that names a file inside a mount (policy, golden set, profile, configuration) names one that exists.
  const settings = { ...envOf(s) };
  for (const [i, a] of [].concat(services[s].command ?? []).entries()) settings[`command[${i}]`] = String(a).replace(/^--[a-z.-]+=/, '');
  for (const [k, v] of Object.entries(settings)) {
    if (typeof v !== 'string' || !v.startsWith('/')) continue;
    const host = hostPath(s, v);
    if (!host && /Path$/.test(k)) problem(`compose: ${s}'s ${k}=${v} is in no bind mount of the service`);
    else if (host && !isBuildOutput(host) && !fs.existsSync(host)) problem(`compose: ${s}'s ${k}=${v} is ${rel(host)} on the host, which does not exist`);
  }
}

// Every image has a version (dclint does not see images that come in through a merge key such as <<: *dotnet).
for (const s of Object.keys(services)) {
  const image = services[s].image ?? '';
  const tag = /:([^/:]+)$/.exec(image)?.[1];
  if (!tag || ['latest', 'stable', 'edge', 'nightly'].includes(tag)) problem(`compose: ${s}'s image ${image || '(none)'} has no version tag`);
}

// --- NATS: the cluster nodes and the users -----------------------------------------------------------
const natsDir = path.join(root, 'deploy/nats');
const confText = read(path.join(natsDir, 'cluster-node.conf')) + '\n' + read(path.join(natsDir, 'auth.conf'));
const uncommented = confText.split('\n').map((l) => l.replace(/#.*$/, '')).join('\n');
const confVars = [...new Set([...uncommented.matchAll(/\$(QWEN_[A-Z0-9_]+)/g)].map((m) => m[1]))];
const authUsers = Object.fromEntries([...read(path.join(natsDir, 'auth.conf')).matchAll(/user:\s*(\w+),\s*password:\s*\$(\w+)/g)].map((m) => [m[1], m[2]]));
if (Object.keys(authUsers).length < 5) problem(`deploy/nats/auth.conf: found only ${Object.keys(authUsers).length} users`);

const hostPort = (s) => { const m = /^([^:]+):(\d+)$/.exec(s ?? ''); return m ? { host: m[1], port: Number(m[2]) } : null; };
const natsNodes = Object.keys(services).filter((s) => /cluster-node\.conf/.test(commandOf(s)));
if (natsNodes.length !== 3) problem(`compose: ${natsNodes.length} services run cluster-node.conf, expected 3`);
const names = new Map();
for (const n of natsNodes) {
  const conf = /-c\s+(\S+)/.exec(commandOf(n))?.[1];
  const confHost = conf && hostPath(n, conf);
  if (!confHost || path.resolve(confHost) !== path.join(natsDir, 'cluster-node.conf')) problem(`compose: ${n} runs ${conf}, which is not deploy/nats/cluster-node.conf (${confHost && rel(confHost)})`);
  else if (!fs.existsSync(path.join(path.dirname(confHost), 'auth.conf'))) problem(`compose: ${n} has no auth.conf beside its configuration`);
  const env = envOf(n);
  for (const v of confVars) if (!env[v]) problem(`compose: NATS node ${n} is not given ${v} (read by deploy/nats/*.conf)`);
  if (names.has(env.QWEN_NATS_NAME)) problem(`compose: ${n} and ${names.get(env.QWEN_NATS_NAME)} share the name ${env.QWEN_NATS_NAME}`);
  names.set(env.QWEN_NATS_NAME, n);
  for (const [user, variable] of Object.entries(authUsers)) {
    if (rawEnvOf(n)[variable] !== undefined && !new RegExp(`^\\$\\{${variable}[:}?-]`).test(rawEnvOf(n)[variable])) problem(`compose: ${n}'s ${variable} (user ${user}) is not \${${variable}}`);
  }
  const routes = [...String(env.QWEN_NATS_ROUTES ?? '').matchAll(/nats-route:\/\/([^:]+):([^@]+)@([^:"]+):(\d+)/g)]
    .map((m) => ({ user: m[1], password: m[2], host: m[3], port: Number(m[4]) }));
  const routed = new Set(routes.map((r) => r.host));
  for (const other of natsNodes) {
    const r = routes.find((x) => x.host === other);
    const port = hostPort(envOf(other).QWEN_NATS_ROUTE_LISTEN)?.port;
    if (!r) problem(`compose: ${n}'s QWEN_NATS_ROUTES does not list ${other}`);
    else if (r.port !== port) problem(`compose: ${n}'s route to ${other} uses port ${r.port}, ${other} listens for routes on ${port}`);
  }
  for (const r of routes) {
    if (!natsNodes.includes(r.host)) problem(`compose: ${n}'s QWEN_NATS_ROUTES lists ${r.host}, which is no NATS node`);
    if (r.password !== env.QWEN_NATS_ROUTE_PASSWORD || r.user !== 'route') problem(`compose: ${n}'s route to ${r.host} does not log in as route with QWEN_NATS_ROUTE_PASSWORD`);
  }
  if (routed.size !== routes.length) problem(`compose: ${n}'s QWEN_NATS_ROUTES lists a node twice`);
}

// The QwenNats services: every node, replicas, their own user.
const dotnetServices = Object.keys(services).filter((s) => /\/app\/\w+\/QwenNats\.\w+\.dll/.test(commandOf(s)));
const usedUsers = new Set();
function checkLogin(s, userKey, passwordKey) {
  const env = envOf(s); const raw = rawEnvOf(s);
  const user = env[userKey];
  if (!user) { problem(`compose: ${s} has no ${userKey}`); return; }
  usedUsers.add(user);
  const variable = authUsers[user];
  if (!variable) problem(`compose: ${s}'s ${userKey}=${user} is not a user of deploy/nats/auth.conf`);
  else if (!new RegExp(`^\\$\\{${variable}[:}?-]`).test(String(raw[passwordKey] ?? ''))) problem(`compose: ${s}'s ${passwordKey} is not \${${variable}} (user ${user}'s password in auth.conf)`);
  else if (natsNodes.some((n) => !envOf(n)[variable])) problem(`compose: ${s} logs in with ${variable}, which some NATS node is not given`);
}
for (const s of dotnetServices) {
  const env = envOf(s);
  const urls = String(env.Nats__Url ?? '').split(',').map((u) => /^nats:\/\/([^:/]+):(\d+)$/.exec(u.trim())).filter(Boolean).map((m) => ({ host: m[1], port: Number(m[2]) }));
  for (const n of natsNodes) {
    const u = urls.find((x) => x.host === n);
    const port = hostPort(envOf(n).QWEN_NATS_CLIENT_LISTEN)?.port;
    if (!u) problem(`compose: ${s}'s Nats__Url does not list ${n}`);
    else if (u.port !== port) problem(`compose: ${s}'s Nats__Url has ${n}:${u.port}, ${n} listens for clients on ${port}`);
  }
  for (const u of urls) if (!natsNodes.includes(u.host)) problem(`compose: ${s}'s Nats__Url lists ${u.host}, which is no NATS node`);
  if (String(env.Topology__Replicas) !== String(natsNodes.length)) problem(`compose: ${s} has Topology__Replicas=${env.Topology__Replicas}, the cluster has ${natsNodes.length} nodes`);
  checkLogin(s, 'Nats__User', 'Nats__Password');
  if (env.Console__NatsUser) checkLogin(s, 'Console__NatsUser', 'Console__NatsPassword');
  const dll = /(\/app\/\S+\.dll)/.exec(commandOf(s))[1];
  if (!hostPath(s, dll)) problem(`compose: ${s} runs ${dll}, which no mount provides`);
}
for (const user of ['ingress', 'worker_blue', 'worker_green', 'judge', 'promoter']) {
  if (!usedUsers.has(user)) problem(`compose: no service logs in as ${user}`);
}

// --- Prometheus ------------------------------------------------------------------------------------------
// Where service s serves /metrics inside the compose network: { port, host }.
function metricsListen(s) {
  const env = envOf(s);
  const urls = env.ASPNETCORE_URLS ?? env.URLS;
  if (urls) {
    const m = /^https?:\/\/([^:/]+):(\d+)/.exec(urls.split(';')[0]);
    return m ? { host: m[1], port: Number(m[2]) } : null;
  }
  if (env.Metrics__Port) return { host: env.Metrics__Host ?? '127.0.0.1', port: Number(env.Metrics__Port) };
  return null;
}
const reachable = (h) => ['0.0.0.0', '*', '+', '[::]', '::'].includes(h);
const jobNames = (cfg) => (cfg.scrape_configs ?? []).map((j) => j.job_name).sort();
const promService = Object.keys(services).find((s) => /^prom\/prometheus:/.test(services[s].image ?? ''));
let promPort = 9090;
if (!promService) problem('compose: no Prometheus service (image prom/prometheus)');
else {
  const args = [].concat(services[promService].command ?? []);
  const configArg = args.find((a) => String(a).startsWith('--config.file='));
  const listen = args.find((a) => String(a).startsWith('--web.listen-address='));
  if (listen) promPort = Number(String(listen).split(':').pop());
  const configHost = configArg && hostPath(promService, configArg.slice('--config.file='.length));
  if (!configHost || !fs.existsSync(configHost)) problem(`compose: Prometheus's ${configArg ?? '--config.file'} is no file of the repository`);
  else {
    const cfg = YAML.parse(read(configHost));
    const reference = YAML.parse(read(path.join(root, 'deploy/prometheus/prometheus.yml')));
    if (JSON.stringify(jobNames(cfg)) !== JSON.stringify(jobNames(reference))) problem(`${rel(configHost)}: jobs ${jobNames(cfg)} are not prometheus.yml's ${jobNames(reference)} (alerts.yml names them)`);
    for (const r of cfg.rule_files ?? []) if (!fs.existsSync(path.resolve(path.dirname(configHost), r))) problem(`${rel(configHost)}: rule file ${r} does not exist`);
    let targets = 0;
    for (const job of cfg.scrape_configs ?? []) {
      for (const group of job.static_configs ?? []) {
        for (const t of group.targets ?? []) {
          targets++;
          const hp = hostPort(t);
          if (!hp || !services[hp.host]) { problem(`${rel(configHost)}: ${job.job_name} target ${t} is not a compose service`); continue; }
          const l = metricsListen(hp.host);
          if (!l) problem(`${rel(configHost)}: ${job.job_name} target ${t}: ${hp.host} serves no metrics (no ASPNETCORE_URLS or Metrics__Port)`);
          else if (l.port !== hp.port) problem(`${rel(configHost)}: ${job.job_name} target ${t}: ${hp.host} serves metrics on port ${l.port}`);
          else if (!reachable(l.host)) problem(`${rel(configHost)}: ${job.job_name} target ${t}: ${hp.host} listens on ${l.host} only, which Prometheus cannot reach`);
          const colour = envOf(hp.host).Worker__Colour;
          if (group.labels?.pool && group.labels.pool !== colour) problem(`${rel(configHost)}: target ${t} is labelled pool ${group.labels.pool}, the service's colour is ${colour}`);
        }
      }
    }
    const scraped = new Set((cfg.scrape_configs ?? []).flatMap((j) => (j.static_configs ?? []).flatMap((g) => g.targets.map((t) => t.split(':')[0]))));
    for (const s of dotnetServices) if (!scraped.has(s)) problem(`${rel(configHost)}: the QwenNats service ${s} is not scraped`);
    if (targets === 0) problem(`${rel(configHost)}: no targets`);
  }
}

// --- Grafana -----------------------------------------------------------------------------------------------
const grafana = Object.keys(services).find((s) => /^grafana\/grafana:/.test(services[s].image ?? ''));
if (!grafana) problem('compose: no Grafana service (image grafana/grafana)');
else {
  const provisioning = hostPath(grafana, '/etc/grafana/provisioning');
  if (!provisioning || !fs.existsSync(provisioning)) problem('compose: Grafana has no provisioning folder from the repository at /etc/grafana/provisioning');
  else {
    const files = (d) => fs.existsSync(d) ? fs.readdirSync(d).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(d, f)) : [];
    const datasources = files(path.join(provisioning, 'datasources')).flatMap((f) => YAML.parse(read(f)).datasources ?? []);
    const prom = datasources.filter((d) => d.type === 'prometheus');
    if (prom.length === 0) problem(`${rel(provisioning)}/datasources: no Prometheus datasource`);
    for (const d of prom) {
      const m = /^https?:\/\/([^:/]+):(\d+)/.exec(d.url ?? '');
      if (!m || m[1] !== promService || Number(m[2]) !== promPort) problem(`${rel(provisioning)}/datasources: ${d.name}'s url ${d.url} is not the Prometheus service (${promService}:${promPort})`);
    }
    const providers = files(path.join(provisioning, 'dashboards')).flatMap((f) => YAML.parse(read(f)).providers ?? []);
    if (providers.length === 0) problem(`${rel(provisioning)}/dashboards: no dashboard provider`);
    for (const p of providers) {
      const folder = p.options?.path;
      // The dashboards under the provider's path: a mounted folder, or files mounted into it.
      const json = mountsOf(grafana).filter((m) => m.target === folder || m.target.startsWith(folder + '/'))
        .flatMap((m) => fs.existsSync(m.source) && fs.statSync(m.source).isDirectory()
          ? fs.readdirSync(m.source).filter((f) => f.endsWith('.json')).map((f) => path.join(m.source, f)) : [m.source]);
      if (json.length === 0) problem(`compose: Grafana's dashboard provider ${p.name} reads ${folder}, where no dashboard is mounted`);
      for (const j of json) {
        try { const d = JSON.parse(read(j)); if (!d.uid || !Array.isArray(d.panels)) problem(`${rel(j)}: not a dashboard (uid, panels)`); }
        catch (e) { problem(`${rel(j)}: ${e.message}`); }
      }
      if (!json.some((j) => path.resolve(j) === path.join(root, 'deploy/grafana/qwen-nats.json'))) problem(`compose: Grafana's provider ${p.name} does not load deploy/grafana/qwen-nats.json`);
    }
  }
}

// --- systemd units and their example environment files ------------------------------------------------------
const systemdDir = path.join(root, 'deploy/systemd');
for (const unit of fs.readdirSync(systemdDir).filter((f) => f.endsWith('.service'))) {
  const text = read(path.join(systemdDir, unit));
  const envFiles = [...text.matchAll(/^EnvironmentFile=-?\/etc\/qwen-nats\/(\S+)\.env$/gm)].map((m) => m[1]);
  if (envFiles.length === 0) problem(`deploy/systemd/${unit}: no EnvironmentFile under /etc/qwen-nats`);
  for (const name of envFiles) {
    for (const instance of name.includes('%i') ? ['blue', 'green'] : [null]) {
      const example = path.join(systemdDir, 'env', `${instance ? name.replace('%i', instance) : name}.env.example`);
      if (!fs.existsSync(example)) { problem(`deploy/systemd/${unit}: ${rel(example)} is missing`); continue; }
      const env = parseEnvFile(example);
      if (unit === 'qwen-nats.service') {
        for (const v of confVars) if (!env[v]) problem(`${rel(example)}: ${v} (read by deploy/nats/*.conf) is not set`);
      } else {
        if (!env.Nats__Url) problem(`${rel(example)}: no Nats__Url`);
        if (!authUsers[env.Nats__User]) problem(`${rel(example)}: Nats__User=${env.Nats__User} is not a user of deploy/nats/auth.conf`);
        if (unit !== 'qwen-ingress.service' && !env.Metrics__Port) problem(`${rel(example)}: no Metrics__Port (the metrics endpoint would be off)`);
      }
      for (const [k, v] of Object.entries(env)) {
        if (/PASSWORD|Password|Token/.test(k) && v && !v.includes('change-me')) problem(`${rel(example)}: ${k} holds a value that is not a change-me placeholder`);
      }
    }
  }
}
for (const [k, v] of Object.entries(envExample)) {
  if (/PASSWORD|TOKEN/.test(k) && v && !v.includes('change-me')) problem(`${rel(envExampleFile)}: ${k} holds a value that is not a change-me placeholder`);
}

if (problems.length) {
  for (const p of problems) console.log(`compose check: ${p}`);
  console.log(`compose check: ${problems.length} problem(s) in ${rel(composeFile)} and the files it refers to`);
  process.exit(1);
}
console.log(`compose check: ok (${natsNodes.length} NATS nodes, ${dotnetServices.length} QwenNats services, Prometheus and Grafana cross-checked with deploy/nats, deploy/prometheus, deploy/grafana, deploy/systemd)`);
