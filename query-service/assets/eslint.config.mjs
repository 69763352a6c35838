// Lint of the browser code. Besides the recommended rules: nothing may parse strings as
// markup or code (innerHTML and friends, document.write, eval), so that a name typed by a
// member can never become HTML in a shopper's or an analyst's browser.
import js from "@eslint/js";
import globals from "globals";

const NO_MARKUP = [
  "error",
  {
    selector: "AssignmentExpression[left.property.name=/^(innerHTML|outerHTML)$/]",
    message: "Build DOM with h() and text nodes: never assign markup.",
  },
  {
    selector:
      "CallExpression[callee.property.name=/^(insertAdjacentHTML|write|writeln|createContextualFragment|setHTMLUnsafe)$/]",
    message: "Build DOM with h() and text nodes: never parse markup.",
  },
  {
    selector: "NewExpression[callee.name='Function']",
    message: "No code from strings.",
  },
];

// The widget is one classic script made of these parts (query-service/src/web/assets.rs
// concatenates them in this order); a name defined in one part is used by the later ones.
const WIDGET_PARTS = [
  "widget/graphql.js",
  "common/dom.js",
  "widget/styles.js",
  "widget/view.js",
  "widget/queries.js",
  "widget/element.js",
];
const SHARED_NAMES = {
  GraphqlClient: "readonly",
  GraphqlError: "readonly",
  readTokenClaims: "readonly",
  h: "readonly",
  append: "readonly",
  replace: "readonly",
  formatPoints: "readonly",
  formatDelta: "readonly",
  formatDate: "readonly",
  formatDateTime: "readonly",
  formatMoney: "readonly",
  progressBar: "readonly",
  adoptStyles: "readonly",
  tierSection: "readonly",
  expiryLine: "readonly",
  stampSection: "readonly",
  rewardsSection: "readonly",
  promotionsSection: "readonly",
  achievementsSection: "readonly",
  ranksSection: "readonly",
  activitySection: "readonly",
  WIDGET_QUERY: "readonly",
  LIVE_SUBSCRIPTION: "readonly",
  REDEEM_MUTATION: "readonly",
};

export default [
  { ignores: ["node_modules/", "vendor/"] },
  js.configs.recommended,
  {
    rules: {
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-restricted-syntax": NO_MARKUP,
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
    },
  },
  {
    files: WIDGET_PARTS,
    languageOptions: {
      sourceType: "script",
      globals: { ...globals.browser, ...SHARED_NAMES },
    },
    rules: {
      // Each part defines names for the later ones, so "defined but unused" and
      // "redeclared global" are expected here; undefined names are still errors.
      "no-unused-vars": "off",
      "no-redeclare": ["error", { builtinGlobals: false }],
    },
  },
  {
    files: ["widget-demo/**/*.js"],
    languageOptions: { sourceType: "script", globals: globals.browser },
  },
  {
    files: ["dashboard/**/*.js"],
    languageOptions: { sourceType: "module", globals: globals.browser },
  },
  {
    files: ["eslint.config.mjs"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
