// Runs in the browser (see page.html); reports its findings to the test server.
import { ChatClient, ChatHttp, newId } from "/dist/index.js";

async function report(result) {
  document.getElementById("out").textContent = JSON.stringify(result);
  await fetch("/result", { method: "POST", body: JSON.stringify(result) });
}

async function run() {
  const api = location.origin; // the test server proxies /v1 to the API
  const http = new ChatHttp(api);
  const name = `web_${newId().slice(0, 12).replace(/-/g, "x")}`;
  const me = await http.register(name, "correct horse battery", "Browser");
  const peerHttp = new ChatHttp(api);
  const peer = await peerHttp.register(`${name}p`, "correct horse battery", "Peer");
  const conv = await http.createConversation([peer.user_id]);
  const device = await http.createDevice("web");
  const client = new ChatClient({ device, userId: me.user_id, http });
  const own = client.waitFor("message", (m) => m.text === "from the browser");
  await client.connect();
  const ack = await client.sendText(conv.conv_id, "from the browser");
  const echoed = await own;
  const fromPeer = client.waitFor("message", (m) => m.sender_id === peer.user_id);
  await peerHttp.send(conv.conv_id, {
    client_msg_id: newId(),
    kind: "text",
    text: "hello browser",
  });
  const received = await fromPeer;
  const recovered = client.waitFor("recovered");
  const missed = client.waitFor("message", (m) => m.text === "while away");
  client.dropConnection();
  await peerHttp.send(conv.conv_id, { client_msg_id: newId(), kind: "text", text: "while away" });
  await recovered;
  await missed;
  const media = await http.upload(new Blob(["a file from the browser"]), "b.txt", "text/plain");
  await client.close();
  return {
    ok: true,
    ack: ack.status,
    echoedSeq: echoed.seq,
    receivedSeq: received.seq,
    lastSeq: client.lastSeq(conv.conv_id),
    mediaMime: media.mime,
    userAgent: navigator.userAgent,
  };
}

run().then(report, (error) => report({ ok: false, error: String(error), stack: error?.stack }));
