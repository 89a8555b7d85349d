export * as Wire from "./wire/index.js"
