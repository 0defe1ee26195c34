// Compile-only stub for apps/android (tests/test_apps_compile.py): signatures as in androidx.activity 1.9 (Kotlin); bodies throw.
package androidx.activity.result

import androidx.activity.result.contract.ActivityResultContracts

fun interface ActivityResultCallback<O> {
    fun onActivityResult(result: O)
}

abstract class ActivityResultLauncher<I> {
    fun launch(input: I): Unit = throw RuntimeException("Stub!")
}

class PickVisualMediaRequest internal constructor()

fun PickVisualMediaRequest(
    mediaType: ActivityResultContracts.PickVisualMedia.VisualMediaType = ActivityResultContracts.PickVisualMedia.ImageAndVideo,
): PickVisualMediaRequest = throw RuntimeException("Stub!")
