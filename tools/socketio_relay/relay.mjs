// The Socket.IO 4 relay the bench measures beside the system (tools/bench_socketio.py):
// the design of a plain Socket.IO chat, which stores nothing. A client joins one
// room per conversation (`join`, acknowledged once it is in the room); a `send`
// names its conversation in `conv_id` and is relayed, as a `send` event, to the
// room's other members. No storage, no ack of its own.
//
//   node relay.mjs [PORT]      (or PORT in the environment; 0 or none: any free port)
//
// It prints one line once it listens: `socket.io relay listening on 127.0.0.1:<port>`.

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: node relay.mjs [PORT]; got port ${port}`);
  process.exit(2);
}

// Node's HTTP server turns Nagle off on every connection (noDelay, the default
// since Node 18), so small frames are not held back waiting for ACKs.
const httpServer = createServer();
// WebSocket only: clients connect straight over it, no long-polling first.
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

io.on("connection", (socket) => {
  socket.on("join", (convId, acknowledge) => {
    if (typeof convId === "string") socket.join(convId);
    if (typeof acknowledge === "function") acknowledge(typeof convId === "string");
  });
  socket.on("send", (message) => {
    if (typeof message?.conv_id === "string") socket.to(message.conv_id).emit("send", message);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`socket.io relay listening on 127.0.0.1:${httpServer.address().port}`);
});

// Stops cleanly when the bench ends it.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => io.close(() => process.exit(0)));
}
