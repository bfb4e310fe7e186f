// Aedes on a TCP port and a WebSocket port (path /mqtt), for the broker probe
// (tools/brokers/aedes.py starts it). PACKAGES_DIR is the folder whose
// node_modules hold the aedes release to run (v1/ or v2-beta/ beside this file).
//
// Aedes has no users, ACLs or admin API of its own: authentication and
// authorization are hooks written in JavaScript. Only the hook the probe needs
// from every broker is here: one account (PROBE_USERNAME / PROBE_PASSWORD), so
// a wrong password is refused.
import { createServer as createTcpServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const {
  HOST, MQTT_PORT, WS_PORT, PROBE_USERNAME, PROBE_PASSWORD, PACKAGES_DIR, MAX_PACKET_SIZE
} = process.env

const requireThere = createRequire(join(PACKAGES_DIR, 'package.json'))
const load = (name) => import(pathToFileURL(requireThere.resolve(name)).href)
const { Aedes } = await load('aedes')
// ws is CommonJS: its exports are properties of the default export.
const { WebSocketServer, createWebSocketStream } = (await load('ws')).default

// maximumPacketSize: the project's limit; only the MQTT 5 release knows it.
const aedes = await Aedes.createBroker({
  heartbeatInterval: 1000,
  maximumPacketSize: Number(MAX_PACKET_SIZE)
})

aedes.authenticate = (client, username, password, callback) => {
  if (username === PROBE_USERNAME && password?.toString() === PROBE_PASSWORD) {
    callback(null, true)
    return
  }
  const error = new Error('bad username or password')
  error.returnCode = 4
  callback(error, false)
}

const tcp = createTcpServer(aedes.handle)
tcp.listen(Number(MQTT_PORT), HOST)

const http = createHttpServer()
const wss = new WebSocketServer({ server: http, path: '/mqtt' })
wss.on('connection', (socket, request) => {
  aedes.handle(createWebSocketStream(socket), request)
})
http.listen(Number(WS_PORT), HOST)

function shutdown () {
  tcp.close()
  http.close()
  aedes.close(() => process.exit(0))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
