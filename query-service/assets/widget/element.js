// <loyalty-widget>: the custom element a shop page embeds (SPEC §10).
//
//   <script src="https://loyalty.example.com/widget.js" defer></script>
//   <loyalty-widget org="acme" publishable-key="pk_..." customer-token="eyJ..."></loyalty-widget>
//
// The customer token is signed by the shop's backend for the logged-in shopper; the query
// service verifies it and answers for that member only (`me`). The widget reads its `exp` only
// to say "expired" without a round trip. Setting a new `customer-token` (a refreshed one)
// reloads the widget. Never give it an org-wide storefront key: whoever reads the page could
// read every member with it (SPEC §10).
// `endpoint` overrides the query service's address (default: where widget.js came from).
// The element carries `data-live` while its live updates are connected.

const SCRIPT_ORIGIN =
  document.currentScript && document.currentScript.src
    ? new URL(document.currentScript.src, location.href).origin
    : location.origin;

/** What the shopper is told for each kind of failure. */
const MESSAGES = {
  expired: "Your session has expired. Please sign in again to see your points.",
  refused: "We could not confirm it is you. Please sign in again to see your points.",
  missing: "Sign in to see your points and rewards.",
  notFound: "No loyalty account was found for this sign-in.",
  network: "The loyalty service cannot be reached right now. Please try again later.",
  config: "This loyalty widget is not set up correctly (missing org or key).",
};

/** The server error codes that mean the credentials were refused. */
const REFUSED_CODES = new Set(["UNAUTHENTICATED", "FORBIDDEN", "INVALID_CUSTOMER_TOKEN"]);

/** Why a redemption was refused, in the shopper's words (by the command side's reason). */
const REDEEM_REFUSALS = {
  insufficient_points: "you do not have enough points for it yet.",
  reward_inactive: "this reward is no longer available.",
  unknown_reward: "this reward is no longer available.",
};

function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

class LoyaltyWidget extends HTMLElement {
  static get observedAttributes() {
    return ["org", "publishable-key", "customer-token", "endpoint"];
  }

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    adoptStyles(this.root);
    this.slots = {};
    this.state = null;
    this.live = null;
    this.pending = new Set();
    this.generation = 0;
    this.refreshTimer = null;
    this.expiryTimer = null;
    this.rewardsKey = null;
    this.startQueued = false;
    this.build();
  }

  connectedCallback() {
    this.scheduleStart();
  }

  disconnectedCallback() {
    this.stop();
  }

  attributeChangedCallback(_name, oldValue, newValue) {
    if (oldValue !== newValue) this.scheduleStart();
  }

  /** One (re)start for a burst of attribute changes (an upgrade reports each attribute). */
  scheduleStart() {
    if (this.startQueued) return;
    this.startQueued = true;
    queueMicrotask(() => {
      this.startQueued = false;
      if (this.isConnected) this.start();
    });
  }

  /** The fixed frame: slots that sections are rendered into; the balance stays one node. */
  build() {
    const slot = (name, tag = "div") => (this.slots[name] = h(tag, { class: `${name}-slot` }));
    this.slots.points = h("span", {
      class: "points",
      "aria-live": "polite",
      "aria-atomic": "true",
    });
    this.slots.name = h("p", { class: "member muted" });
    this.slots.status = h("p", { class: "status", role: "status" });
    // What became of each redemption, newest first; kept across re-renders so that screen
    // readers announce each outcome, and so that two outcomes at once are both shown.
    this.slots.outcomes = h("ul", { class: "outcomes", "aria-live": "polite" });
    this.slots.balance = h(
      "div",
      { class: "balance", hidden: true },
      this.slots.points,
      h("span", { class: "unit" }, "points"),
    );
    this.root.append(
      h(
        "article",
        { class: "card", "aria-label": "Loyalty account" },
        h("header", {}, h("h2", {}, "Your rewards"), this.slots.name),
        this.slots.status,
        h("div", { class: "summary" }, this.slots.balance, slot("expiry"), slot("tier")),
        h("div", { class: "rewards-area" }, slot("rewards"), this.slots.outcomes),
        slot("stamps"),
        slot("promotions"),
        slot("achievements"),
        slot("ranks"),
        slot("activity"),
      ),
    );
  }

  stop() {
    this.generation += 1;
    this.removeAttribute("data-live");
    if (this.live) this.live.close();
    this.live = null;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.expiryTimer);
  }

  /**
   * When the token runs out, the page is told (`loyalty-token-expired`: a shop refreshes the
   * token by setting `customer-token` again) and the shopper sees why nothing updates.
   */
  watchExpiry(claims) {
    if (!claims || typeof claims.exp !== "number") return;
    const left = claims.exp * 1000 - Date.now();
    // setTimeout holds at most ~24.8 days; tokens live at most 24 h.
    if (left > 0 && left < 2 ** 31) {
      this.expiryTimer = setTimeout(() => {
        this.dispatchEvent(new CustomEvent("loyalty-token-expired", { bubbles: true }));
        this.fail(MESSAGES.expired, "INVALID_CUSTOMER_TOKEN");
      }, left);
    }
  }

  config() {
    return {
      org: this.getAttribute("org"),
      endpoint: this.getAttribute("endpoint") || SCRIPT_ORIGIN,
      publishableKey: this.getAttribute("publishable-key"),
      customerToken: this.getAttribute("customer-token"),
    };
  }

  /** (Re)loads everything for the current attributes. */
  async start() {
    this.stop();
    const generation = this.generation;
    this.clearSections();
    const config = this.config();
    if (!config.org || !config.publishableKey) return this.fail(MESSAGES.config);
    if (!config.customerToken) return this.fail(MESSAGES.missing);
    const claims = readTokenClaims(config.customerToken);
    if (!claims) return this.fail(MESSAGES.refused, "INVALID_CUSTOMER_TOKEN");
    if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
      return this.fail(MESSAGES.expired, "INVALID_CUSTOMER_TOKEN");
    }
    this.client = new GraphqlClient(config.endpoint, config);
    this.say("Loading your rewards\u2026");
    const ok = await this.refresh(generation);
    if (ok && generation === this.generation) {
      this.subscribe(generation);
      this.watchExpiry(claims);
    }
  }

  /** Reads the member's whole view; false (with a message shown) if it failed. */
  async refresh(generation) {
    let data;
    try {
      data = await this.client.request(WIDGET_QUERY, { org: this.config().org });
    } catch (error) {
      // Once the view is up, a failed re-read leaves it as it is (the live balance goes on,
      // the next event reads again); only refused credentials end it.
      const keep = this.state !== null && !REFUSED_CODES.has(error.code);
      if (generation === this.generation && !keep) this.failWith(error);
      return false;
    }
    if (generation !== this.generation) return false;
    if (!data.member) {
      this.fail(MESSAGES.notFound, "NOT_FOUND");
      return false;
    }
    const live = this.state && this.state.live;
    this.state = { program: data.program, member: data.member, live };
    this.say("");
    this.render();
    return true;
  }

  subscribe(generation) {
    const memberId = this.state.member.memberId;
    this.live = this.client.subscribe(
      LIVE_SUBSCRIPTION,
      { org: this.config().org, id: memberId },
      {
        onNext: (data) => {
          if (generation !== this.generation) return;
          // The first message is the state as of subscribing: from here on nothing is missed.
          this.toggleAttribute("data-live", true);
          this.applyLive(data.memberUpdated);
        },
        onError: (error) => {
          if (generation === this.generation) this.failWith(error);
        },
        onReconnect: () => this.scheduleRefresh(generation),
      },
    );
  }

  /** An event of the member: the balance and tier change at once, the rest after a re-read. */
  applyLive(update) {
    if (!update || !this.state) return;
    const known = this.state.live;
    if (known && update.sequence < known.sequence) return;
    this.state.live = update;
    this.renderBalance();
    if (update.eventType) this.scheduleRefresh(this.generation);
  }

  /**
   * Re-reads the view after live events (coalesced). The read models may lag the stream by
   * the projector's delay: while the balance read differs from the live one, it reads again a
   * few times, backing off (the balance shown keeps following the live events meanwhile).
   */
  scheduleRefresh(generation, attempt = 0) {
    clearTimeout(this.refreshTimer);
    const delay = attempt === 0 ? 150 : Math.min(3000, 100 * 2 ** attempt);
    this.refreshTimer = setTimeout(async () => {
      const ok = await this.refresh(generation);
      if (ok && generation === this.generation && attempt < 6 && this.lagging()) {
        this.scheduleRefresh(generation, attempt + 1);
      }
    }, delay);
  }

  /** Whether the view read last is behind the live events. */
  lagging() {
    const { member, live } = this.state;
    return Boolean(live) && member.balance.points !== live.points;
  }

  points() {
    const { member, live } = this.state;
    return live ? live.points : member.balance.points;
  }

  renderBalance() {
    const points = this.points();
    const text = formatPoints(points);
    if (this.slots.points.textContent !== text) this.slots.points.textContent = text;
    this.slots.balance.hidden = false;
    this.slots.balance.dataset.points = String(points);
    this.renderRewards();
  }

  /**
   * Redraws the rewards only when what they show changed, and keeps the keyboard focus on the
   * same reward's button: a live update must not pull the focus from under a shopper.
   */
  renderRewards() {
    const points = this.points();
    const rewards = (this.state.program && this.state.program.rewards) || [];
    const key = JSON.stringify([points, [...this.pending].sort(), rewards]);
    if (key === this.rewardsKey) return;
    this.rewardsKey = key;
    const focused = this.root.activeElement && this.root.activeElement.dataset.rewardId;
    replace(
      this.slots.rewards,
      rewardsSection(points, this.state.program, this.pending, (reward) => this.redeem(reward)),
    );
    if (focused) {
      const again = [...this.slots.rewards.querySelectorAll("button[data-reward-id]")].find(
        (button) => button.dataset.rewardId === focused,
      );
      if (again) again.focus();
    }
  }

  render() {
    const { member, program } = this.state;
    this.slots.name.textContent = member.displayName ? `Hi, ${member.displayName}` : "";
    this.renderBalance();
    replace(this.slots.expiry, expiryLine(member.balance.nextExpiry));
    replace(this.slots.tier, tierSection(member.tier, program));
    replace(this.slots.stamps, stampSection(member.stampCards, program));
    replace(this.slots.promotions, promotionsSection(member.activePromotions || []));
    replace(this.slots.achievements, achievementsSection(member.badges, member.achievements));
    replace(this.slots.ranks, ranksSection(member.leaderboardRanks));
    replace(this.slots.activity, activitySection(member.history, program));
  }

  clearSections() {
    this.state = null;
    this.slots.balance.hidden = true;
    this.slots.points.textContent = "";
    this.slots.name.textContent = "";
    this.slots.outcomes.replaceChildren();
    this.rewardsKey = null;
    this.pending.clear();
    for (const name of ["expiry", "tier", "rewards", "stamps", "promotions"]) {
      this.slots[name].replaceChildren();
    }
    for (const name of ["achievements", "ranks", "activity"]) this.slots[name].replaceChildren();
  }

  /**
   * Redeems `reward` for the member. One redemption id per click, reused if the request is
   * retried, so a click never redeems twice. The answer's balance is shown at once unless a
   * live event arrived meanwhile (the live feed then has the newer word).
   */
  async redeem(reward) {
    if (this.pending.has(reward.rewardId)) return;
    const generation = this.generation;
    const seenBefore = this.state.live ? this.state.live.sequence : null;
    this.pending.add(reward.rewardId);
    this.renderRewards();
    try {
      const data = await this.client.request(REDEEM_MUTATION, {
        org: this.config().org,
        rewardId: reward.rewardId,
        redemptionId: newIdempotencyKey(),
      });
      if (generation !== this.generation) return;
      const answer = data && data.redeemReward;
      const seenNow = this.state.live ? this.state.live.sequence : null;
      if (answer && typeof answer.balance === "number" && seenNow === seenBefore) {
        this.state.live = { ...(this.state.live || {}), points: answer.balance };
        this.renderBalance();
      }
      this.outcome(`Redeemed ${reward.name}. Enjoy!`, false);
      this.dispatchEvent(
        new CustomEvent("loyalty-redeemed", { detail: { rewardId: reward.rewardId } }),
      );
    } catch (error) {
      if (generation !== this.generation) return;
      if (error.code === "INVALID_CUSTOMER_TOKEN") {
        this.failWith(error);
        return;
      }
      const why = REDEEM_REFUSALS[error.reason] || error.message;
      this.outcome(`${reward.name} could not be redeemed: ${why}`, true);
    } finally {
      this.pending.delete(reward.rewardId);
      if (generation === this.generation && this.state) this.renderRewards();
    }
  }

  /** Adds a redemption's outcome on top of the last few. */
  outcome(text, isError) {
    this.slots.outcomes.prepend(h("li", { class: isError ? "error" : "ok" }, text));
    while (this.slots.outcomes.children.length > 3) this.slots.outcomes.lastChild.remove();
  }

  say(text, isError = false) {
    const status = this.slots.status;
    status.textContent = text;
    status.classList.toggle("error", isError);
    status.setAttribute("role", isError ? "alert" : "status");
  }

  fail(message, code) {
    this.stop();
    this.clearSections();
    this.say(message, true);
    if (code) this.slots.status.dataset.code = code;
    else delete this.slots.status.dataset.code;
    this.dispatchEvent(new CustomEvent("loyalty-error", { detail: { message, code } }));
    return false;
  }

  /** A failed request as the shopper should read it. */
  failWith(error) {
    const claims = readTokenClaims(this.config().customerToken);
    const expiredNow = claims && typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
    if (expiredNow || error.reason === "expired") {
      return this.fail(MESSAGES.expired, "INVALID_CUSTOMER_TOKEN");
    }
    if (error.code === "NETWORK") return this.fail(MESSAGES.network, error.code);
    if (REFUSED_CODES.has(error.code)) return this.fail(MESSAGES.refused, error.code);
    return this.fail(error.message, error.code);
  }
}

if (!customElements.get("loyalty-widget")) customElements.define("loyalty-widget", LoyaltyWidget);
