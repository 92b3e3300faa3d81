// A tus server written by others, behind node:https on 127.0.0.1, for tests/test_tus.py.
//
//   node serve.mjs --server tus-server|uploadx --dir STORE --cert CHAIN --key KEY
//                  --token TOKEN [--absolute-location]
//
// Listens on a free port and prints {"port": N} as one line on stdout once ready.
// Every request must carry "Authorization: Bearer TOKEN" (401 otherwise), as the
// hosted service asks. The servers keep their defaults otherwise, except that
// @tus/server answers relative upload URLs unless --absolute-location is given:
// behind node:https it cannot tell that the scheme is https and answers http://.
import { readFileSync } from "node:fs";
import { mkdirSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    server: { type: "string" },
    dir: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    token: { type: "string" },
    "absolute-location": { type: "boolean", default: false },
  },
});

async function makeHandler() {
  mkdirSync(args.dir, { recursive: true });
  if (args.server === "tus-server") {
    const { Server } = await import("@tus/server");
    const { FileStore } = await import("@tus/file-store");
    const server = new Server({
      path: "/files",
      datastore: new FileStore({ directory: args.dir }),
      relativeLocation: !args["absolute-location"],
    });
    return (req, res) => server.handle(req, res);
  }
  if (args.server === "uploadx") {
    const { Tus } = await import("@uploadx/core");
    const meta = join(args.dir, "..", "uploadx-meta");
    mkdirSync(meta, { recursive: true });
    return new Tus({ directory: args.dir, metaDir: meta }).handle;
  }
  throw new Error(`unknown --server ${args.server}`);
}

const handler = await makeHandler();
const wanted = `Bearer ${args.token}`;
const tls = { cert: readFileSync(args.cert), key: readFileSync(args.key) };

const server = https.createServer(tls, (req, res) => {
  if (req.headers.authorization !== wanted) {
    req.resume();
    res.writeHead(401, { "Content-Type": "text/plain", "WWW-Authenticate": "Bearer" });
    res.end("missing or wrong bearer token\n");
    return;
  }
  handler(req, res);
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
