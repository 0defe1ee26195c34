package org.sr2bit.upscaler.core

import java.io.DataOutputStream
import java.io.OutputStream
import java.util.zip.CRC32
import java.util.zip.Deflater

/**
 * A PNG (8-bit RGB, no interlace) written row by row, so an upscaled photo never exists whole in memory.
 *
 * Why not Bitmap.compress: it needs the whole bitmap, 780 MB of ARGB for a 12 MP photo at x4. Rows are
 * filtered with PNG's Sub filter (each byte minus the byte 3 to its left), which deflates photos far better
 * than no filter at the same speed. Call [writeRows] until [height] rows are in, then [close].
 */
class PngWriter(output: OutputStream, val width: Int, val height: Int, level: Int = 6) : AutoCloseable {
    private val out = DataOutputStream(output)
    private val deflater = Deflater(level)
    private val row = ByteArray(1 + 3 * width)
    private val buffer = ByteArray(1 shl 16)
    private var rowsWritten = 0
    private var isFinishing = false

    init {
        require(width >= 1 && height >= 1) { "a PNG needs at least 1x1 pixels, got ${width}x$height" }
        out.write(byteArrayOf(0x89.toByte(), 'P'.code.toByte(), 'N'.code.toByte(), 'G'.code.toByte(), 13, 10, 26, 10))
        val header = java.io.ByteArrayOutputStream()
        DataOutputStream(header).apply {
            writeInt(width); writeInt(height)
            write(byteArrayOf(8, 2, 0, 0, 0))  // bit depth 8, colour type 2 (RGB), deflate, adaptive filters, no interlace
        }
        chunk("IHDR", header.toByteArray(), header.size())
    }

    /** Appends [rows] rows of 0xAARRGGBB pixels (alpha dropped), row-major, [width] per row. */
    fun writeRows(argb: IntArray, rows: Int) {
        require(argb.size >= rows * width) { "$rows rows need ${rows * width} pixels, got ${argb.size}" }
        require(rowsWritten + rows <= height) { "${rowsWritten + rows} rows written to a $height-row PNG" }
        for (y in 0 until rows) {
            row[0] = 1  // filter type Sub
            var left0 = 0
            var left1 = 0
            var left2 = 0
            for (x in 0 until width) {
                val p = argb[y * width + x]
                val r = (p ushr 16) and 0xFF
                val g = (p ushr 8) and 0xFF
                val b = p and 0xFF
                row[1 + 3 * x] = (r - left0).toByte()
                row[2 + 3 * x] = (g - left1).toByte()
                row[3 + 3 * x] = (b - left2).toByte()
                left0 = r; left1 = g; left2 = b
            }
            deflater.setInput(row)
            drain()
        }
        rowsWritten += rows
    }

    /** Finishes the image (all [height] rows must be written) and closes the stream. */
    override fun close() {
        try {
            check(rowsWritten == height) { "PNG closed after $rowsWritten of $height rows" }
            deflater.finish()
            isFinishing = true
            drain()
            chunk("IEND", ByteArray(0), 0)
        } finally {
            deflater.end()
            out.close()
        }
    }

    /** Deflates what was given: until the input is used up, or (after finish) until the stream is complete. */
    private fun drain() {
        while (!deflater.finished() && (isFinishing || !deflater.needsInput())) {
            val n = deflater.deflate(buffer)
            if (n > 0) chunk("IDAT", buffer, n)
        }
    }

    private fun chunk(type: String, data: ByteArray, length: Int) {
        val crc = CRC32()
        val typeBytes = type.toByteArray(Charsets.US_ASCII)
        crc.update(typeBytes)
        crc.update(data, 0, length)
        out.writeInt(length)
        out.write(typeBytes)
        out.write(data, 0, length)
        out.writeInt(crc.value.toInt())
    }
}
