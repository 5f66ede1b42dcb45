// Verify signed RoutingCommands as a router written in JavaScript would: parse the record, drop
// `signature`, canonicalize the rest with RFC 8785, check the signature with node:crypto.
//
//   node verify.mjs vectors FILE                     every vector in FILE (tests/data/command_signing_vectors.json)
//   node verify.mjs record FILE --public-key PEM     one record (the bytes as read from rollout.control)
//   node verify.mjs record FILE --hmac-secret FILE
//
// Exit code 0: every signature good; 1: a signature refused (the reason on stderr); 2: bad usage.
import { readFileSync } from "node:fs";
import { createHmac, createPublicKey, timingSafeEqual, verify } from "node:crypto";
import canonicalize from "canonicalize";

/** Why the record's signature is refused, or null when it is good. */
export function refusal(recordText, keys) {
  const document = JSON.parse(recordText);
  const signature = document.signature;
  if (typeof signature !== "string" || !signature.includes(":")) return "unsigned";
  delete document.signature;
  const data = Buffer.from(canonicalize(document), "utf8");
  const [algorithm, encoded] = [signature.slice(0, signature.indexOf(":")), signature.slice(signature.indexOf(":") + 1)];
  const raw = Buffer.from(encoded, "base64");
  if (algorithm === "hmac-sha256" && keys.hmacSecret) {
    const expected = createHmac("sha256", keys.hmacSecret).update(data).digest();
    return expected.length === raw.length && timingSafeEqual(expected, raw) ? null : "bad signature (hmac-sha256)";
  }
  if (algorithm === "ed25519" && keys.publicKey) {
    return verify(null, data, keys.publicKey, raw) ? null : "bad signature (ed25519)";
  }
  return `no key for ${algorithm}`;
}

function main(argv) {
  const [mode, file, ...rest] = argv;
  if (mode === "vectors" && file) {
    const vectors = JSON.parse(readFileSync(file, "utf8"));
    const keys = {
      hmacSecret: Buffer.from(vectors.hmac_secret_base64, "base64"),
      publicKey: createPublicKey(vectors.ed25519_public_key_pem),
    };
    let failures = 0;
    for (const vector of vectors.vectors) {
      const document = JSON.parse(vector.record_hmac);
      delete document.signature;
      if (canonicalize(document) !== vector.canonical) {
        console.error(`${vector.name}: canonical form differs:\n  node: ${canonicalize(document)}\n  file: ${vector.canonical}`);
        failures += 1;
      }
      for (const record of [vector.record_hmac, vector.record_ed25519]) {
        const why = refusal(record, keys);
        if (why !== null) {
          console.error(`${vector.name}: ${why}`);
          failures += 1;
        }
      }
    }
    console.log(`${vectors.vectors.length - failures} of ${vectors.vectors.length} vectors verified`);
    return failures ? 1 : 0;
  }
  if (mode === "record" && file && rest.length === 2) {
    const [flag, keyFile] = rest;
    const keys = flag === "--public-key" ? { publicKey: createPublicKey(readFileSync(keyFile)) }
      : flag === "--hmac-secret" ? { hmacSecret: Buffer.from(readFileSync(keyFile, "utf8").trim()) } : null;
    if (keys === null) return usage();
    const why = refusal(readFileSync(file, "utf8"), keys);
    if (why !== null) {
      console.error(why);
      return 1;
    }
    console.log("signature good");
    return 0;
  }
  return usage();
}

function usage() {
  console.error("usage: node verify.mjs vectors FILE | record FILE (--public-key PEM | --hmac-secret FILE)");
  return 2;
}

process.exitCode = main(process.argv.slice(2));
