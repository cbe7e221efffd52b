# Sourced by the device_*.sh scripts: everything they print also goes to $OUT/log; the Vulkan
# loader (carried as .gl/*.deb, which the image lacks), the NVIDIA ICD, and the environment every
# run uses.
OUT=${OUT:-/tmp/stylize-device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export XDG_RUNTIME_DIR=/tmp WGPU_BACKEND=vulkan WGPU_ADAPTER_NAME=${WGPU_ADAPTER_NAME-nvidia} STYLIZE_REQUIRE_GPU=1
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
PYTHON=${PYTHON:-python3}
