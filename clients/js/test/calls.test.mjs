// @ts-check
/** Call signaling between JS clients: invite, accept, hang up, decline, refusals. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { ChatClient } from "../dist/index.js";
import { newUser, online, pair } from "./helpers.mjs";

test("invite, accept, hang up: both sides are told, with LiveKit tokens and the call state", async (t) => {
  const { a, b } = await pair("caller", "callee");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const ringing = alice.waitFor("call", (e) => e.event === "ringing");
  const incoming = bob.waitFor("call", (e) => e.event === "incoming");
  const bobsState = bob.waitFor("callState", (s) => s.calls.some((c) => c.status === "ringing"));
  const callId = await alice.startCall(b.userId, "video");
  const rung = await ringing;
  assert.equal(rung.call_id, callId);
  assert.equal(rung.from, a.userId);
  assert.equal(rung.to, b.userId);
  assert.equal(rung.media, "video");
  assert.equal(rung.livekit?.room, callId);
  const offer = await incoming;
  assert.equal(offer.call_id, callId);
  assert.ok(offer.livekit?.token);
  assert.equal((await bobsState).calls[0]?.call_id, callId);

  const acceptedForAlice = alice.waitFor("call", (e) => e.event === "accepted");
  const acceptedForBob = bob.waitFor("call", (e) => e.event === "accepted");
  const active = bob.waitFor("callState", (s) => s.calls[0]?.status === "active");
  await bob.acceptCall(callId);
  assert.equal((await acceptedForAlice).device_id, bob.deviceId);
  assert.equal((await acceptedForBob).device_id, bob.deviceId, "so the other devices stop ringing");
  assert.equal((await active).calls[0]?.device_id, bob.deviceId);

  const endedForAlice = alice.waitFor("call", (e) => e.event === "ended");
  const endedForBob = bob.waitFor("call", (e) => e.event === "ended");
  const idle = bob.waitFor("callState", (s) => s.calls.length === 0);
  await alice.hangUp(callId);
  assert.equal((await endedForAlice).reason, "hangup");
  assert.equal((await endedForBob).reason, "hangup");
  await idle;

  const history = await a.http.calls();
  assert.equal(history.calls[0]?.call_id, callId);
  assert.equal(history.calls[0]?.status, "ended");
});

test("a declined call, and a refused invite", async (t) => {
  const { a, b } = await pair("caller", "busyb");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const incoming = bob.waitFor("call", (e) => e.event === "incoming");
  const declined = alice.waitFor("call", (e) => e.event === "declined");
  const callId = await alice.startCall(b.userId);
  await incoming;
  await bob.declineCall(callId);
  assert.equal((await declined).call_id, callId);

  const stranger = await newUser("strngr");
  const refused = alice.waitFor("call", (e) => e.event === "error");
  const refusedId = await alice.startCall(stranger.userId);
  const error = await refused;
  assert.equal(error.call_id, refusedId);
  assert.equal(error.reason, "no_shared_conversation");
});

test("a device that connects mid-call learns of it from the retained call state", async (t) => {
  const { a, b } = await pair("caller", "late");
  const alice = await online(t, a);
  const bob = await online(t, b);
  const incoming = bob.waitFor("call", (e) => e.event === "incoming");
  const callId = await alice.startCall(b.userId);
  await incoming;
  const device = await b.http.createDevice("ios");
  const bobsPhone = new ChatClient({ device, userId: b.userId, http: b.http });
  t.after(() => bobsPhone.close());
  const state = bobsPhone.waitFor("callState", (s) => s.calls.length > 0);
  await bobsPhone.connect();
  const live = (await state).calls[0];
  assert.equal(live?.call_id, callId);
  assert.equal(live?.status, "ringing");
  const cancelled = bob.waitFor("call", (e) => e.event === "cancelled");
  await alice.hangUp(callId);
  assert.equal((await cancelled).call_id, callId);
});
