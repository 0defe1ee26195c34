package org.sr2bit.upscaler.core

/** A small JSON reader for the golden vectors (no Maven here, so no JSON library): maps, lists, numbers, strings, booleans, null. */
class MiniJson(private val text: String) {
    private var i = 0

    fun parse(): Any? = value().also { skip(); check(i == text.length) { "trailing data at $i" } }

    private fun skip() { while (i < text.length && text[i].isWhitespace()) i++ }

    private fun value(): Any? {
        skip()
        return when (val c = text[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> if (c == '-' || c.isDigit()) num() else error("unexpected '$c' at $i")
        }
    }

    private fun literal(word: String, result: Any?): Any? {
        check(text.startsWith(word, i)) { "expected $word at $i" }
        i += word.length
        return result
    }

    private fun obj(): Map<String, Any?> {
        val out = LinkedHashMap<String, Any?>()
        i++
        skip()
        if (text[i] == '}') { i++; return out }
        while (true) {
            skip()
            val key = str()
            skip(); check(text[i] == ':') { "expected ':' at $i" }; i++
            out[key] = value()
            skip()
            if (text[i] == ',') { i++; continue }
            check(text[i] == '}') { "expected '}' at $i" }; i++
            return out
        }
    }

    private fun arr(): List<Any?> {
        val out = ArrayList<Any?>()
        i++
        skip()
        if (text[i] == ']') { i++; return out }
        while (true) {
            out.add(value())
            skip()
            if (text[i] == ',') { i++; continue }
            check(text[i] == ']') { "expected ']' at $i" }; i++
            return out
        }
    }

    private fun str(): String {
        check(text[i] == '"') { "expected a string at $i" }
        val sb = StringBuilder()
        i++
        while (text[i] != '"') {
            if (text[i] == '\\') {
                i++
                when (val e = text[i]) {
                    'n' -> sb.append('\n'); 't' -> sb.append('\t'); 'u' -> { sb.append(text.substring(i + 1, i + 5).toInt(16).toChar()); i += 4 }
                    else -> sb.append(e)
                }
            } else sb.append(text[i])
            i++
        }
        i++
        return sb.toString()
    }

    private fun num(): Double {
        val start = i
        while (i < text.length && (text[i].isDigit() || text[i] in "+-.eE")) i++
        return text.substring(start, i).toDouble()
    }
}
