// The devices' WebSocket endpoint: MQTT over WebSocket in, plain MQTT over TCP
// to Mosquitto out, one TCP connection per WebSocket, bytes passed unchanged.
//
// Why: Mosquitto 2.0 serves its WebSocket listeners through libwebsockets, which
// poll()s every WebSocket descriptor on each turn of the broker's loop. At
// 10,000 connections one poll() took about 1 ms of kernel time, and the broker
// spent 94% of its core in it at 100 msg/s (docs/load.md). Its TCP listeners
// use epoll, whose cost does not grow with idle connections. So devices speak
// WebSocket to this gateway (Node's epoll loop and the `ws` library), and the
// broker sees plain TCP clients. Nothing MQTT is interpreted here: the broker
// still authenticates every device (its own username and password in CONNECT)
// and applies its ACLs; a Last Will fires as before, because a WebSocket that
// dies without DISCONNECT ends its TCP connection without one too.
//
// Settings (environment; the project's settings of the same names, see
// .env.example): MQTT_WS_GATEWAY_BIND, MQTT_WS_GATEWAY_PORT, MQTT_HOST,
// MQTT_TCP_PORT, MQTT_MAX_CONNECTIONS, MQTT_WS_GATEWAY_WORKERS. Devices connect
// to /mqtt, as on the broker's own WebSocket listener. GET /healthz answers
// {"status":"ok","connections":n} (n: the answering worker's).
//
// Workers: with MQTT_WS_GATEWAY_WORKERS above 1, that many processes share the
// port (node:cluster), for more cores and because each connection holds two
// descriptors here: 10,000 devices need 20,000 in one process, more than many
// hosts allow one process. A worker that dies is replaced; killing the primary
// ends the workers too.

import cluster from "node:cluster";
import http from "node:http";
import net from "node:net";
import { WebSocketServer } from "ws";

const env = process.env;
const BIND = env.MQTT_WS_GATEWAY_BIND || "127.0.0.1";
const PORT = Number(env.MQTT_WS_GATEWAY_PORT || 9002);
const PATH = "/mqtt";
const BROKER_HOST = env.MQTT_HOST || "127.0.0.1";
const BROKER_PORT = Number(env.MQTT_TCP_PORT || 1883);
const WORKERS = Math.max(1, Number(env.MQTT_WS_GATEWAY_WORKERS || 1));
// -1: no cap (as for the broker's listeners); shared out among the workers.
const MAX_TOTAL = Number(env.MQTT_MAX_CONNECTIONS || 20000);
const MAX_CONNECTIONS = MAX_TOTAL < 0 ? -1 : Math.ceil(MAX_TOTAL / WORKERS);
// A frame carries an MQTT packet or a piece of one; the broker's own
// message_size_limit still applies to what arrives.
const MAX_FRAME_BYTES = 1 << 20;
// Stop reading from the broker while this much waits to go out to a slow device.
const HIGH_WATER_BYTES = 1 << 20;
const CLOSE_GRACE_MS = 5000;
// The subprotocols MQTT clients ask for (MQTT 3.1.1 and 5 say "mqtt").
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

let open = 0;

const server = http.createServer((request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ status: "ok", connections: open }));
    return;
  }
  response.writeHead(404, { "content-type": "application/json" });
  response.end(JSON.stringify({ error: { code: "not_found", message: "MQTT is at " + PATH } }));
});

const gateway = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: MAX_FRAME_BYTES,
  handleProtocols: (offered) => SUBPROTOCOLS.find((name) => offered.has(name)) ?? false,
});

function refuse(socket, status) {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

// A client that resets its connection must never take the gateway down: every
// socket gets an error handler before anything can fail on it.
server.on("clientError", (_error, socket) => socket.destroy());

server.on("upgrade", (request, socket, head) => {
  socket.on("error", () => socket.destroy());
  const path = new URL(request.url ?? "/", "http://gateway").pathname;
  if (path !== PATH) return refuse(socket, "404 Not Found");
  if (MAX_CONNECTIONS >= 0 && open >= MAX_CONNECTIONS) return refuse(socket, "503 Service Unavailable");
  socket.setNoDelay(true);
  gateway.handleUpgrade(request, socket, head, (device) => relay(device, socket));
});

// One device: its WebSocket and its TCP connection to the broker live and die together.
function relay(device, deviceSocket) {
  open += 1;
  const broker = net.connect({ host: BROKER_HOST, port: BROKER_PORT, noDelay: true });
  let finished = false;

  const finish = () => {
    if (finished) return;
    finished = true;
    open -= 1;
  };

  device.on("message", (data) => {
    if (!broker.write(data)) device.pause();
  });
  broker.on("drain", () => device.resume());

  broker.on("data", (chunk) => {
    device.send(chunk, { binary: true });
    if (device.bufferedAmount > HIGH_WATER_BYTES) broker.pause();
  });
  deviceSocket.on("drain", () => {
    if (broker.isPaused()) broker.resume();
  });

  // The broker closed (a DISCONNECT, a kicked or revoked client, a restart):
  // close the WebSocket the same way.
  broker.on("close", () => {
    finish();
    if (device.readyState === device.OPEN) device.close(1000);
    else device.terminate();
  });
  broker.on("error", () => {}); // "close" follows

  // The device went away, cleanly or not: end the TCP side after what it sent
  // (a DISCONNECT, if any, reaches the broker first; without one the broker
  // publishes the device's Will).
  device.on("close", () => {
    finish();
    broker.end();
    setTimeout(() => broker.destroy(), CLOSE_GRACE_MS).unref();
  });
  device.on("error", () => {}); // "close" follows
}

function shutdown() {
  server.close();
  for (const device of gateway.clients) device.terminate();
  setTimeout(() => process.exit(0), 100).unref();
}

// The primary of several workers: start them, replace one that dies, stop them all.
function supervise() {
  let stopping = false;
  for (let index = 0; index < WORKERS; index += 1) cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) return;
    console.error(`ws-gateway: worker ${worker.process.pid} ended (${signal ?? code}); replacing it`);
    cluster.fork();
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill("SIGTERM");
    setTimeout(() => process.exit(0), 300).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (WORKERS > 1 && cluster.isPrimary) {
  supervise();
} else {
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  // The primary is gone (even by kill -9): so is this worker, and its devices.
  if (cluster.isWorker) process.on("disconnect", () => process.exit(0));
  server.listen(PORT, BIND, () => {
    console.log(
      `ws-gateway: ws://${BIND}:${PORT}${PATH} -> mqtt://${BROKER_HOST}:${BROKER_PORT}` +
        ` (at most ${MAX_CONNECTIONS} connections in process ${process.pid})`,
    );
  });
}
