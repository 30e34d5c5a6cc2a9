// The page's SSHSIG signatures and OpenSSH keys, checked by the real OpenSSH (`ssh-keygen`), the
// same checks the server makes on a login.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { webcrypto } from "node:crypto";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  armour,
  fingerprint,
  loginMessage,
  NAMESPACE,
  openSshPublicKey,
  publicKeyBlob,
  sign,
} from "../src/sshsig.js";

// Node's WebCrypto, passed explicitly: Node 18 (Debian 12) has no global `crypto`.
const { subtle } = webcrypto;

/** A fresh key pair the way the page makes one: the private key non-extractable. */
async function keyPair() {
  const pair = await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const publicRaw = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicRaw };
}

/** Runs ssh-keygen with `args`, `input` on stdin; fails the test when it cannot be run. */
function sshKeygen(args, input) {
  const run = spawnSync("ssh-keygen", args, { input });
  assert.equal(run.error, undefined, `ssh-keygen must be installed: ${run.error}`);
  return run;
}

function withDir(body) {
  const dir = mkdtempSync(join(tmpdir(), "kanava-sshsig-"));
  try {
    return body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("ssh-keygen accepts a login signature and refuses it for a tampered message", async () => {
  const key = await keyPair();
  const message = loginMessage("alice", "q1XgY2+/nonce==");
  const blob = await sign(key, message, NAMESPACE, subtle);
  withDir((dir) => {
    const file = join(dir, "login.sig");
    writeFileSync(file, armour(blob));
    const good = sshKeygen(["-Y", "check-novalidate", "-n", "kanava-web", "-s", file], message);
    assert.equal(good.status, 0, `valid signature refused: ${good.stderr}`);
    assert.match(good.stdout.toString(), /Good "kanava-web" signature/);

    const tampered = loginMessage("mallory", "q1XgY2+/nonce==");
    const bad = sshKeygen(["-Y", "check-novalidate", "-n", "kanava-web", "-s", file], tampered);
    assert.notEqual(bad.status, 0, "a signature over another message must not verify");

    const otherNamespace = sshKeygen(["-Y", "check-novalidate", "-n", "file", "-s", file], message);
    assert.notEqual(otherNamespace.status, 0, "the signature is bound to its namespace");
  });
});

test("a signature over UTF-8 text and a long message verifies", async () => {
  const key = await keyPair();
  const message = `päivää ✓\n${"x".repeat(100_000)}`;
  const blob = await sign(key, message, NAMESPACE, subtle);
  withDir((dir) => {
    const file = join(dir, "long.sig");
    writeFileSync(file, armour(blob));
    const run = sshKeygen(["-Y", "check-novalidate", "-n", "kanava-web", "-s", file], message);
    assert.equal(run.status, 0, `${run.stderr}`);
  });
});

test("the signature verifies only with the signer's key", async () => {
  const key = await keyPair();
  const other = await keyPair();
  const message = loginMessage("alice", "nonce");
  const blob = await sign(key, message, NAMESPACE, subtle);
  withDir((dir) => {
    const file = join(dir, "login.sig");
    const signers = join(dir, "allowed_signers");
    writeFileSync(file, armour(blob));
    writeFileSync(signers, `alice ${openSshPublicKey(key.publicRaw)}\n`);
    const mine = sshKeygen(
      ["-Y", "verify", "-f", signers, "-I", "alice", "-n", "kanava-web", "-s", file],
      message,
    );
    assert.equal(mine.status, 0, `${mine.stderr}`);
    writeFileSync(signers, `alice ${openSshPublicKey(other.publicRaw)}\n`);
    const theirs = sshKeygen(
      ["-Y", "verify", "-f", signers, "-I", "alice", "-n", "kanava-web", "-s", file],
      message,
    );
    assert.notEqual(theirs.status, 0, "another key must not verify the signature");
  });
});

test("the OpenSSH public key and its fingerprint are those ssh-keygen reads", async () => {
  const key = await keyPair();
  const line = openSshPublicKey(key.publicRaw);
  assert.match(line, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* kanava-web$/);
  const expected = await fingerprint(key.publicRaw, subtle);
  withDir((dir) => {
    const file = join(dir, "key.pub");
    writeFileSync(file, `${line}\n`);
    const run = sshKeygen(["-l", "-E", "sha256", "-f", file]);
    assert.equal(run.status, 0, `${run.stderr}`);
    const [bits, printed, comment, type] = run.stdout.toString().trim().split(" ");
    assert.deepEqual([bits, printed, comment, type], ["256", expected, "kanava-web", "(ED25519)"]);
  });
});

test("armour wraps base64 at 70 columns", async () => {
  const key = await keyPair();
  const text = armour(await sign(key, "m", NAMESPACE, subtle));
  const lines = text.trimEnd().split("\n");
  assert.equal(lines[0], "-----BEGIN SSH SIGNATURE-----");
  assert.equal(lines.at(-1), "-----END SSH SIGNATURE-----");
  const body = lines.slice(1, -1);
  assert.ok(body.length > 1);
  assert.ok(body.slice(0, -1).every((l) => l.length === 70));
  assert.ok(body.at(-1).length <= 70);
});

test("a public key that is not 32 bytes is refused", () => {
  assert.throws(() => publicKeyBlob(new Uint8Array(31)), /32 bytes/);
});
