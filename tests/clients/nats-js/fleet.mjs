// Lists the QwenNats fleet and reads the rollout state the way an operator's own tooling would, with nats.js
// (a NATS client the project did not write): $SRV.PING and $SRV.INFO through the micro-services client, and a
// watch of the rollout bucket. Prints one JSON object; exits 1 with the error when anything is refused.
// FLEET_SERVICES: how many services answer; each discovery request waits for that many answers (up to 15 s), so a
// loaded machine's slow answer is not missed; without it, for answers until 2 s have passed.
//   NATS_URL=nats://127.0.0.1:4222 NATS_USER=operator NATS_PASSWORD=... FLEET_SERVICES=4 node fleet.mjs
import { connect } from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";
import { Kvm } from "@nats-io/kv";

const collect = async (iter) => {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
};

let nc;
try {
  nc = await connect({
    servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(","),
    user: process.env.NATS_USER,
    pass: process.env.NATS_PASSWORD,
    name: "fleet-check (nats.js)",
  });
  const expected = Number.parseInt(process.env.FLEET_SERVICES ?? "", 10);
  const client = new Svcm(nc).client(expected > 0
    ? { strategy: "count", maxMessages: expected, maxWait: 15000 }
    : { maxWait: 2000 });
  const pings = await collect(await client.ping());
  const infos = await collect(await client.info());
  const kv = await new Kvm(nc).open("qwen_rollout");
  const watch = await kv.watch({ key: "state" });
  let state = null;
  const first = setTimeout(() => watch.stop(), 5000);
  for await (const e of watch) {
    state = { revision: e.revision, operation: e.operation, value: JSON.parse(e.string()) };
    break;
  }
  clearTimeout(first);
  console.log(JSON.stringify({
    services: pings.map((p) => ({ name: p.name, id: p.id, version: p.version, metadata: p.metadata })),
    infos: infos.map((i) => ({ name: i.name, id: i.id, metadata: i.metadata, endpoints: i.endpoints.map((e) => e.subject) })),
    rollout: state,
  }));
  await nc.close();
} catch (e) {
  console.error(`fleet-check failed: ${e?.message ?? e}`);
  if (nc) await nc.close().catch(() => {});
  process.exit(1);
}
