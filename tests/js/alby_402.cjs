// Drives @getalby/lightning-tools (npm), unmodified, against a live gateway: its L402 and MPP
// clients pay with a wallet whose payInvoice is the gateway's dev wallet (POST /api/dev/pay).
// argv: base URL, then the paths of steps "<client>:<path>[:reuse]" where client is l402, mpp
// or any (fetch402), and reuse sends the credential of the previous step of that client.
// Prints one JSON line: each step's status, what it paid, and its answer.
const { fetchWithL402, fetchWithMpp, fetch402 } = require("@getalby/lightning-tools/402");

const [base, ...steps] = process.argv.slice(2);
const paid = [];
const wallet = {
  async payInvoice({ invoice }) {
    const response = await fetch(`${base}/api/dev/pay`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ bolt11: invoice }),
    });
    if (!response.ok) throw new Error(`dev pay: ${response.status} ${await response.text()}`);
    paid.push(invoice);
    return { preimage: (await response.json()).preimage };
  },
};
const clients = { l402: fetchWithL402, mpp: fetchWithMpp, any: fetch402 };

(async () => {
  const last = {};
  const results = [];
  for (const step of steps) {
    const [name, path, reuse] = step.split(":");
    const options = { wallet };
    if (reuse === "reuse") options.credentials = last[name];
    const before = paid.length;
    const response = await clients[name](`${base}${path}`, {}, options);
    const text = await response.text();
    if (response.payment && response.payment.credentials) last[name] = response.payment.credentials;
    results.push({
      step,
      status: response.status,
      paidInvoices: paid.length - before,
      amountSat: response.payment ? response.payment.amountSat : null,
      credentialScheme: response.payment && response.payment.credentials
        ? response.payment.credentials.value.split(" ")[0]
        : null,
      receipt: response.headers.get("payment-receipt"),
      body: text,
    });
  }
  console.log(JSON.stringify(results));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
