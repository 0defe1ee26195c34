package org.sr2bit.upscaler.core

import java.io.FileNotFoundException
import java.io.IOException

/**
 * One sentence for the user about why an upscale failed; the app shows it instead of crashing.
 *
 * Why here: the worker thread catches everything (a missing model asset, Module.load's exception, a runtime
 * error, OutOfMemoryError) and the wording is testable without Android. [asset] is the model's asset name,
 * [runtime] the runtime's display name.
 */
fun describeFailure(error: Throwable, runtime: String, asset: String): String = when (error) {
    is MissingAssetException ->
        "The model $asset is not in the app: build it with `python -m pipeline build` and copy it to app/src/main/assets."
    is OutOfMemoryError -> "The phone ran out of memory for this photo; try a smaller one or close other apps."
    is FileNotFoundException, is UnreadablePhotoException -> "The picked photo could not be read (${error.message ?: "no details"})."
    is IOException -> "Reading or writing a file failed (${error.message ?: error.javaClass.simpleName})."
    else -> "$runtime could not run $asset (${error.javaClass.simpleName}: ${error.message ?: "no details"})."
}

/** The model asset is not packaged (assets.open threw FileNotFoundException for it). */
class MissingAssetException(asset: String, cause: Throwable) : IOException("asset $asset not found", cause)

/** The picked image cannot be opened or decoded (no stream, unsupported format, a decoder that returned null). */
class UnreadablePhotoException(message: String) : IOException(message)
