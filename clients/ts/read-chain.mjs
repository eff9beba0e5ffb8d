#!/usr/bin/env node
// Reads Strata's accounts and events from a chain with the Anchor TypeScript
// client and the committed IDL alone: no Strata code, no hand-written layout.
//
//   node clients/ts/read-chain.mjs --url http://127.0.0.1:8899 [--idl idl/strata.json]
//
// Prints one JSON document on stdout:
//   programId      the IDL's address
//   configAddress  the config PDA, derived from the seeds the IDL declares
//   config         `program.account.config.fetch(configAddress)`
//   accounts       every account of every type the IDL names, by type
//                  (`program.account.<type>.all()`: getProgramAccounts on the
//                  type's discriminator), sorted by address
//   transactions   every successful transaction that touched the program,
//                  oldest first, with the events decoded from its logs
//                  (`EventParser` over `meta.logMessages`)
// Values are plain JSON: public keys in base58, 64-bit integers (BN) as
// decimal strings, byte arrays as arrays of numbers, enums as Anchor decodes
// them ({ variant: {} }). Field names are Anchor's (camelCase).

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import anchor from "@coral-xyz/anchor";
import { Connection, PublicKey } from "@solana/web3.js";

const { BN, EventParser, Program } = anchor;

function parseArgs(argv) {
  const here = dirname(fileURLToPath(import.meta.url));
  const args = { url: null, idl: resolve(here, "../../idl/strata.json") };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if ((flag === "--url" || flag === "--idl") && value !== undefined) {
      args[flag.slice(2)] = value;
      i++;
    } else {
      throw new Error(`unknown argument ${flag}`);
    }
  }
  if (!args.url) {
    throw new Error("usage: read-chain.mjs --url <RPC URL> [--idl <path>]");
  }
  return args;
}

// Anchor's decoded values as plain JSON.
function plain(value) {
  if (value === null || value === undefined) return null;
  if (BN.isBN(value)) return value.toString(10);
  if (value instanceof PublicKey) return value.toBase58();
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

// The config PDA from the IDL: an instruction account named `config` whose
// seeds are all constants (the IDL carries them since `resolution` is on).
function configAddress(idl, programId) {
  for (const ix of idl.instructions) {
    for (const account of ix.accounts) {
      const seeds = account.pda?.seeds;
      if (account.name === "config" && seeds?.every((s) => s.kind === "const")) {
        const bytes = seeds.map((s) => Buffer.from(s.value));
        return PublicKey.findProgramAddressSync(bytes, programId)[0];
      }
    }
  }
  throw new Error("the IDL declares no constant seeds for a `config` account");
}

// Every signature of `address`, oldest first (the RPC pages newest first).
async function allSignatures(connection, address) {
  const all = [];
  let before;
  for (;;) {
    const page = await connection.getSignaturesForAddress(address, { before, limit: 1000 });
    all.push(...page);
    if (page.length < 1000) break;
    before = page[page.length - 1].signature;
  }
  return all.reverse();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const idl = JSON.parse(readFileSync(args.idl, "utf8"));
  const connection = new Connection(args.url, "confirmed");
  // Reading needs no wallet: a provider is only its connection here.
  const program = new Program(idl, { connection });
  const programId = program.programId;

  const config = configAddress(idl, programId);
  const out = {
    programId: programId.toBase58(),
    configAddress: config.toBase58(),
    config: plain(await program.account.config.fetch(config)),
    accounts: {},
    transactions: [],
  };

  // `program.account` is keyed by the IDL's account names in camelCase.
  for (const { name } of idl.accounts) {
    const client = Object.entries(program.account).find(
      ([key]) => key.toLowerCase() === name.toLowerCase(),
    )?.[1];
    if (!client) throw new Error(`the Anchor client has no accessor for account ${name}`);
    const all = await client.all();
    out.accounts[name] = all
      .map(({ publicKey, account }) => ({ address: publicKey.toBase58(), data: plain(account) }))
      .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }

  const parser = new EventParser(programId, program.coder);
  for (const { signature, err } of await allSignatures(connection, programId)) {
    if (err) continue;
    const tx = await connection.getTransaction(signature, {
      commitment: "confirmed",
      maxSupportedTransactionVersion: 0,
    });
    const logs = tx?.meta?.logMessages;
    if (!logs) throw new Error(`no logs for transaction ${signature}`);
    const events = [...parser.parseLogs(logs, true)].map(({ name, data }) => ({
      name,
      data: plain(data),
    }));
    out.transactions.push({ signature, slot: tx.slot, events });
  }

  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`read-chain: ${e?.stack ?? e}\n`);
  process.exit(1);
});
