// The project's lint and format rules: Effect's own repository style (dprint through
// @effect/eslint-plugin: 2 spaces, no semicolons, 120 columns), plus the rules the code keeps by
// habit made checkable: no floating effects, no wall clock or ambient randomness in src/, no
// promise runners inside the library, functions of one screen and files of one idea.
import * as effectEslint from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"
import noFloatingEffect from "./eslint/no-floating-effect.mjs"

const local = { rules: { "no-floating-effect": noFloatingEffect } }

export default tseslint.config(
  { ignores: ["dist/**", "docs/**", "node_modules/**", "coverage/**", "**/*.md", "bench/results*/**", "test/lint/fixtures/**"] },
  ...effectEslint.configs.dprint,
  {
    files: ["**/*.ts", "**/*.mts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    plugins: { "@typescript-eslint": tseslint.plugin, local },
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "local/no-floating-effect": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-explicit-any": "error"
    }
  },
  {
    // The fixtures show these rules at work (test/lint/Lint.test.ts); the lint run ignores them.
    files: ["src/**/*.ts", "test/lint/fixtures/**/*.ts"],
    rules: {
      "no-restricted-properties": ["error",
        { object: "Date", property: "now", message: "Use Clock.currentTimeMillis (the TestClock controls it)." },
        { object: "Math", property: "random", message: "Use Random (seeded in tests and the simulation)." },
        { object: "performance", property: "now", message: "Use Clock." },
        { object: "Effect", property: "runPromise", message: "The library returns effects; the caller runs them." },
        { object: "Effect", property: "runSync", message: "The library returns effects; the caller runs them." }
      ],
      "no-restricted-globals": ["error",
        { name: "setTimeout", message: "Use Effect.sleep (interruptible, on the TestClock)." },
        { name: "setInterval", message: "Use Effect.repeat with a Schedule." }
      ],
      "max-lines-per-function": ["error", { max: 70, skipBlankLines: true, skipComments: true }],
      "max-lines": ["error", { max: 400, skipBlankLines: true, skipComments: true }]
    }
  }
)
