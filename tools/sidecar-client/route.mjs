// A serving service in Node asking the ShadowCanary sidecar where each request goes, as a router in
// another language would: POST /v1/route with the model, the subject and its attributes, over one
// keep-alive connection (Node's built-in fetch). Prints one JSON line per subject:
// [subject, serve, mirror, role]. No dependencies.
//
//   node route.mjs http://127.0.0.1:8787 fraud 10000 [attribute=value ...]
const [base, model, count, ...pairs] = process.argv.slice(2);
const attributes = Object.fromEntries(pairs.map((pair) => pair.split("=")));
const out = [];
for (let i = 0; i < Number(count); i++) {
  const subject = `user-${i}`;
  const body = { model, subject };
  if (pairs.length) body.attributes = attributes;
  const response = await fetch(`${base}/v1/route`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) {
    console.error(`${subject}: HTTP ${response.status}: ${await response.text()}`);
    process.exit(1);
  }
  const answer = await response.json();
  out.push(JSON.stringify([subject, answer.serve, answer.mirror, answer.role]));
}
process.stdout.write(out.join("\n") + "\n");
