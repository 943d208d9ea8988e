// Parses a declarative Jenkinsfile with Groovy's own parser and prints its pipeline as JSON.
import groovy.json.JsonOutput
import org.codehaus.groovy.ast.builder.AstBuilder
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.ast.stmt.*
import org.codehaus.groovy.control.CompilePhase

def directives(ClosureExpression closure) {
    def code = closure.code
    def statements = code instanceof BlockStatement ? code.statements : [code]
    statements.collect { st ->
        def e = st instanceof ExpressionStatement ? st.expression : null
        if (e instanceof MethodCallExpression) {
            return [name: e.methodAsString, line: e.lineNumber,
                    args: (e.arguments as ArgumentListExpression).expressions.collect { value(it) }]
        }
        if (e instanceof BinaryExpression && e.operation.text == '=') {  // NAME = 'value' in environment { }
            return [name: '=', line: e.lineNumber, args: [e.leftExpression.text, value(e.rightExpression)]]
        }
        throw new IllegalArgumentException("line ${st.lineNumber}: not a pipeline directive: ${st.text}")
    }
}

def value(Expression e) {
    if (e instanceof ConstantExpression) return e.value
    if (e instanceof GStringExpression) {
        def out = new StringBuilder()
        e.strings.eachWithIndex { s, i ->
            out << s.value
            if (i < e.values.size()) {
                def v = e.values[i]
                if (v instanceof PropertyExpression && v.objectExpression.text == 'env') out << '${' + v.propertyAsString + '}'
                else throw new IllegalArgumentException("line ${e.lineNumber}: unsupported interpolation ${v.text}")
            }
        }
        return out.toString()
    }
    if (e instanceof ClosureExpression) return directives(e)
    if (e instanceof VariableExpression) return e.name
    throw new IllegalArgumentException("line ${e.lineNumber}: unsupported argument ${e.text}")
}

def nodes = new AstBuilder().buildFromString(CompilePhase.CONVERSION, false, new File(args[0]).text)
def top = (nodes[0] as BlockStatement).statements.collect { it.expression }
def pipeline = top.find { it instanceof MethodCallExpression && it.methodAsString == 'pipeline' }
if (pipeline == null) throw new IllegalArgumentException("no pipeline { } block")
println JsonOutput.toJson(value(pipeline.arguments.expressions[0]))
