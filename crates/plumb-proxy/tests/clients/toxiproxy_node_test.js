// Drives a plumb proxy server with toxiproxy-node-client (npm), unchanged.
// Usage: node toxiproxy_node_test.js ADMIN_URL ECHO_UPSTREAM
// Launched by tests/proxy/clients.rs; exits non-zero on the first failure.
"use strict";
const assert = require("node:assert/strict");
const net = require("node:net");
const { Toxiproxy, ToxiproxyError } = require("toxiproxy-node-client");

function roundTrip(listen, msg = "ping") {
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const sock = net.connect({ host, port }, () => sock.write(msg));
    let got = "";
    sock.setTimeout(10000, () => reject(new Error("timeout")));
    sock.on("data", (d) => {
      got += d.toString();
      if (got.length >= msg.length) {
        sock.end();
        assert.equal(got, msg);
        resolve(Number(process.hrtime.bigint() - start) / 1e6);
      }
    });
    sock.on("error", reject);
  });
}

async function main() {
  const [adminUrl, upstream] = process.argv.slice(2);
  const tp = new Toxiproxy(adminUrl);
  const version = await tp.getVersion();
  assert.match(version, /"version": "2\./);

  const proxy = await tp.createProxy({ name: "node_echo", listen: "127.0.0.1:0", upstream });
  assert.equal(proxy.enabled, true);
  assert.ok(!proxy.listen.endsWith(":0"), proxy.listen);
  assert.ok((await roundTrip(proxy.listen)) < 500);

  const toxic = await proxy.addToxic({ type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 300 } });
  assert.equal(toxic.name, "latency_downstream");
  const ms = await roundTrip(proxy.listen);
  assert.ok(ms >= 280, `latency toxic: ${ms} ms`);

  const updated = await toxic.update({ attributes: { latency: 50 } , toxicity: 1});
  assert.equal(updated.attributes.latency, 50);
  const fetched = await proxy.getToxic("latency_downstream");
  assert.equal(fetched.attributes.latency, 50);
  await fetched.remove();
  assert.ok((await roundTrip(proxy.listen)) < 250);

  await assert.rejects(proxy.addToxic({ type: "no_such_toxic", attributes: {} }), (e) => e instanceof Error);
  await assert.rejects(tp.get("missing"), (e) => e instanceof Error);

  const disabled = await proxy.update({ enabled: false });
  assert.equal(disabled.enabled, false);
  await assert.rejects(roundTrip(proxy.listen));
  await proxy.update({ enabled: true });
  assert.ok((await roundTrip(proxy.listen)) < 500);

  const populated = await tp.populate([{ name: "node_second", listen: "127.0.0.1:0", upstream, enabled: true }]);
  assert.ok(populated.node_second);
  const all = await tp.getAll();
  assert.deepEqual(Object.keys(all).sort(), ["node_echo", "node_second"]);
  await tp.reset();
  await all.node_second.remove();
  await proxy.remove();
  assert.deepEqual(Object.keys(await tp.getAll()), []);
  console.log("toxiproxy-node-client: all checks passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
