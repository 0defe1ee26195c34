plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.sr2bit.upscaler"
    compileSdk = 35
    defaultConfig {
        applicationId = "org.sr2bit.upscaler"
        // 28: BitmapRegionDecoder and ExifInterface read HEIF photos from Android 9 on; the photo picker
        // (androidx.activity) and both runtimes (LiteRT 2.3 declares 24) need less.
        minSdk = 28
        targetSdk = 35
        versionCode = 2
        versionName = "0.2"
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    androidResources { noCompress += listOf("pte", "tflite") }  // both runtimes map the model file
}

dependencies {
    implementation(project(":core"))
    implementation(libs.executorch.android)
    implementation(libs.litert)
    implementation(libs.androidx.activity)  // ComponentActivity, photo picker, enableEdgeToEdge
    implementation(libs.androidx.core)      // FileProvider, ViewCompat / WindowInsetsCompat
}
