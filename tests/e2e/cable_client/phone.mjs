// A phone written against the official Action Cable client (@rails/actioncable), run under
// Node by simgate's tests: connect, subscribe to GatewayChannel, answer send_sms with
// delivery_status sent then delivered, and hand over the SMS given on stdin (one JSON
// object a line: {"from", "text"}). Everything it sees is printed as JSON lines.
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");
// The client watches the page's visibility; Node has no page.
globalThis.document = { visibilityState: "visible" };
globalThis.addEventListener = () => {};
globalThis.removeEventListener = () => {};
const ActionCable = require("@rails/actioncable");
ActionCable.adapters.WebSocket = WebSocket;
ActionCable.adapters.logger = { log() {} };

const [url, key] = process.argv.slice(2);
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const consumer = ActionCable.createConsumer(`${url}/cable?api_key=${key}`);
const gateway = consumer.subscriptions.create(
  { channel: "GatewayChannel" },
  {
    connected() {
      say({ event: "connected", protocol: consumer.connection.getProtocol() });
      this.perform("heartbeat", { status: "online", battery_level: 42, signal_strength: 3 });
    },
    disconnected(info) {
      say({ event: "disconnected", reconnect: Boolean(info && info.willAttemptReconnect) });
      if (!(info && info.willAttemptReconnect)) process.exit(0);
    },
    rejected() {
      say({ event: "rejected" });
      process.exit(0);
    },
    received(data) {
      say({ event: "received", data });
      if (data && data.action === "send_sms") {
        const id = data.payload.message_id;
        this.perform("delivery_status", { message_id: id, status: "sent" });
        setTimeout(() => this.perform("delivery_status", { message_id: id, status: "delivered" }), 200);
      }
    },
  },
);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const sms = JSON.parse(line);
  gateway.perform("sms_received", {
    phone_number: sms.from,
    message_body: sms.text,
    received_at: new Date().toISOString(),
  });
});
