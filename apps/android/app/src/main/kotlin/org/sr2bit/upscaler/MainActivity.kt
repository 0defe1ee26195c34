package org.sr2bit.upscaler

import android.app.Activity
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Bundle
import android.os.SystemClock
import android.widget.Button
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.RadioGroup
import android.widget.TextView
import androidx.core.content.FileProvider
import java.io.File
import kotlin.concurrent.thread
import org.sr2bit.upscaler.core.argbToChw
import org.sr2bit.upscaler.core.chwToArgb
import org.sr2bit.upscaler.core.upscaleTiled

/**
 * Pick a photo, upscale it tile by tile with the artifact of the chosen runtime (assets: model.pte from
 * `pipeline build --target executorch`, model.tflite from `--target tflite`; 64 px tiles, x4), show before/after
 * and the time taken, share the result.
 */
class MainActivity : Activity() {
    private var result: File? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        findViewById<Button>(R.id.pick).setOnClickListener {
            startActivityForResult(Intent(Intent.ACTION_GET_CONTENT).setType("image/*"), PICK)
        }
        findViewById<Button>(R.id.share).setOnClickListener { share() }
    }

    @Deprecated("Activity result API kept simple for the sample")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data
        if (requestCode == PICK && resultCode == RESULT_OK && uri != null) upscale(uri)
    }

    private fun upscale(uri: Uri) {
        val before = ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
            decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
        }.copy(Bitmap.Config.ARGB_8888, false)
        findViewById<ImageView>(R.id.before).setImageBitmap(before)
        val status = findViewById<TextView>(R.id.status)
        val progress = findViewById<ProgressBar>(R.id.progress)
        val useExecuTorch = findViewById<RadioGroup>(R.id.runtime).checkedRadioButtonId == R.id.executorch
        status.text = "Upscaling..."
        thread {  // off the UI thread: load the runtime once per photo, then every tile
            val runner = if (useExecuTorch) ExecuTorchRunner(this, "model.pte", TILE, SCALE)
                         else LiteRtRunner(this, "model.tflite", TILE, SCALE)
            val w = before.width
            val h = before.height
            val pixels = IntArray(w * h).also { before.getPixels(it, 0, w, 0, 0, w, h) }
            val started = SystemClock.elapsedRealtime()
            val sr = runner.use { r ->
                upscaleTiled(argbToChw(pixels, w, h), 3, h, w, SCALE, TILE, TILE / 4,
                    onTile = { done, total -> runOnUiThread { progress.max = total; progress.progress = done } },
                    upscaleTile = r::upscaleTile)
            }
            val millis = SystemClock.elapsedRealtime() - started
            val after = Bitmap.createBitmap(chwToArgb(sr, w * SCALE, h * SCALE), w * SCALE, h * SCALE, Bitmap.Config.ARGB_8888)
            val file = File(cacheDir, "results/upscaled.png").apply { parentFile?.mkdirs() }
            file.outputStream().use { after.compress(Bitmap.CompressFormat.PNG, 100, it) }
            runOnUiThread {
                findViewById<ImageView>(R.id.after).setImageBitmap(after)
                status.text = "${if (useExecuTorch) "ExecuTorch" else "LiteRT"}: $millis ms, ${w}x$h -> ${w * SCALE}x${h * SCALE}"
                result = file
                findViewById<Button>(R.id.share).isEnabled = true
            }
        }
    }

    private fun share() {
        val file = result ?: return
        val uri = FileProvider.getUriForFile(this, "org.sr2bit.upscaler.files", file)
        startActivity(Intent.createChooser(Intent(Intent.ACTION_SEND).setType("image/png")
            .putExtra(Intent.EXTRA_STREAM, uri).addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION), "Share"))
    }

    companion object {
        private const val PICK = 1
        private const val TILE = 64
        private const val SCALE = 4
    }
}
