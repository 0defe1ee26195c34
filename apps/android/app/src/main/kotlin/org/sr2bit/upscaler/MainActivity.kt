package org.sr2bit.upscaler

import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.util.Log
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.RadioGroup
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.enableEdgeToEdge
import androidx.activity.result.ActivityResultLauncher
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.core.content.FileProvider
import androidx.core.view.ViewCompat
import androidx.core.view.WindowInsetsCompat
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import org.sr2bit.upscaler.core.describeFailure

/**
 * Pick a photo (system photo picker), upscale it tile by tile with the artifact of the chosen runtime (assets:
 * model.pte from `pipeline build --target executorch`, model.tflite from `--target tflite`; x4; ExecuTorch runs the
 * .pte's fastest tile size for the photo, measured on the phone, LiteRT 64 px tiles),
 * show small before/after previews and the time taken, share the full-size PNG.
 *
 * Threads: decoding, inference and encoding run on one worker thread (the runtimes are not thread-safe); views
 * are touched only on the main thread, through runOnUiThread. Every failure on the worker, OutOfMemoryError
 * included, becomes one sentence in the status line (core describeFailure) instead of a crash.
 */
class MainActivity : ComponentActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var result: File? = null
    private lateinit var picker: ActivityResultLauncher<PickVisualMediaRequest>

    override fun onCreate(savedInstanceState: Bundle?) {
        enableEdgeToEdge()  // targetSdk 35 draws behind the system bars on Android 15: pad the content by their insets
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        ViewCompat.setOnApplyWindowInsetsListener(findViewById<View>(R.id.root)) { view, insets ->
            val bars = insets.getInsets(WindowInsetsCompat.Type.systemBars() or WindowInsetsCompat.Type.displayCutout())
            view.setPadding(bars.left, bars.top, bars.right, bars.bottom)
            WindowInsetsCompat.CONSUMED
        }
        picker = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri: Uri? ->
            if (uri != null) upscale(uri)
        }
        findViewById<Button>(R.id.pick).setOnClickListener {
            picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.share).setOnClickListener { share() }
    }

    override fun onDestroy() {
        worker.shutdownNow()
        super.onDestroy()
    }

    /**
     * ExecuTorch: the .pte's method for this photo (ExecuTorchRunner.forPhoto times each tile size here; the streamed
     * buffers may take half the app's heap). LiteRT: its one signature at [TILE].
     */
    private fun openRunner(useExecuTorch: Boolean, asset: String, w: Int, h: Int): TileRunner =
        if (useExecuTorch) ExecuTorchRunner.forPhoto(this, asset, TILE, SCALE, w, h, Runtime.getRuntime().maxMemory() / 2)
        else LiteRtRunner(this, asset, TILE, SCALE)

    private fun upscale(uri: Uri) {
        val status = findViewById<TextView>(R.id.status)
        val progress = findViewById<ProgressBar>(R.id.progress)
        val pick = findViewById<Button>(R.id.pick)
        val useExecuTorch = findViewById<RadioGroup>(R.id.runtime).checkedRadioButtonId == R.id.executorch
        val runtime = if (useExecuTorch) "ExecuTorch" else "LiteRT"
        val asset = if (useExecuTorch) "model.pte" else "model.tflite"
        pick.isEnabled = false
        findViewById<Button>(R.id.share).isEnabled = false
        status.text = getString(R.string.upscaling)
        worker.execute {
            val outcome = runCatching {  // any Throwable: exceptions, OutOfMemoryError, UnsatisfiedLinkError
                val output = File(cacheDir, "results/upscaled-${System.currentTimeMillis()}.png")
                output.parentFile?.listFiles()?.forEach { old -> old.delete() }  // keep only the latest result
                output.parentFile?.mkdirs()
                PhotoUpscaler(contentResolver) { w, h -> openRunner(useExecuTorch, asset, w, h) }.upscale(uri, output) { done, total ->
                    runOnUiThread { progress.max = total; progress.progress = done }
                }
            }
            runOnUiThread {
                if (isDestroyed) return@runOnUiThread
                pick.isEnabled = true
                outcome.onSuccess { up ->
                    findViewById<ImageView>(R.id.before).setImageBitmap(up.before)
                    findViewById<ImageView>(R.id.after).setImageBitmap(up.after)
                    status.text = "$runtime: ${up.millis} ms, ${up.width}x${up.height} -> ${up.width * up.scale}x${up.height * up.scale} PNG, ${up.tile} px tiles"
                    result = up.png
                    findViewById<Button>(R.id.share).isEnabled = true
                }.onFailure { error ->
                    Log.e(TAG, "upscale failed", error)
                    status.text = describeFailure(error, runtime, asset)
                }
            }
        }
    }

    private fun share() {
        val file = result ?: return
        val uri = FileProvider.getUriForFile(this, "org.sr2bit.upscaler.files", file)
        startActivity(Intent.createChooser(Intent(Intent.ACTION_SEND).setType("image/png")
            .putExtra(Intent.EXTRA_STREAM, uri).addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION), getString(R.string.share)))
    }

    companion object {
        private const val TAG = "sr2bit"
        private const val TILE = 64
        private const val SCALE = 4
    }
}
