/**
 * An ESLint rule: an Effect built as a statement and dropped (`Ref.set(ref, 1)` without `yield*`)
 * never runs. TypeScript accepts it; this rule uses the type checker to report it.
 */
const hasProperty = (checker, type, prefix) =>
  checker.getPropertiesOfType(type).some((property) => String(property.escapedName).startsWith(prefix))

// A running fiber is an Effect too (joining it), and dropping one is fine: it already runs.
const isEffectType = (checker, type) => {
  const types = type.isUnion() ? type.types : [type]
  return types.some((member) => hasProperty(checker, member, "__@EffectTypeId") && !hasProperty(checker, member, "__@FiberTypeId"))
}

export default {
  meta: {
    type: "problem",
    docs: { description: "an Effect value used as a statement is never run" },
    messages: { floating: "This Effect is built and dropped, so it never runs: yield* it, return it, or run it." },
    schema: []
  },
  create(context) {
    const services = context.sourceCode.parserServices
    if (services?.program === undefined || services.program === null) return {}
    const checker = services.program.getTypeChecker()
    return {
      ExpressionStatement(node) {
        const expression = node.expression
        if (expression.type === "YieldExpression" || expression.type === "AwaitExpression") return
        if (expression.type === "AssignmentExpression" || expression.type === "UnaryExpression") return
        if (expression.type === "Literal") return
        const type = services.getTypeAtLocation(expression)
        if (isEffectType(checker, type)) context.report({ node, messageId: "floating" })
      }
    }
  }
}
