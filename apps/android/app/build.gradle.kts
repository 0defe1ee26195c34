plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.sr2bit.upscaler"
    compileSdk = 35
    defaultConfig {
        applicationId = "org.sr2bit.upscaler"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
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
    implementation("org.pytorch:executorch-android:1.0.0")
    implementation("com.google.ai.edge.litert:litert:2.0.2")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
}
