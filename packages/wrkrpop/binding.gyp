{
  "targets": [
    {
      "target_name": "wireedit",
      "sources": ["src/wireedit.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
