for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance (every check)"; timeout 240 ./.bin/conformance --backend webgpu --adapter vulkan --cases 32 2>&1 | grep -v XDG | tail -45
CASES=gemm_q_,broadcast_,binary_f16,reduce_f16,unary_f16,attention_decode,gather_
echo "== torch"; python3 benches/reference/torch_baseline.py --only $CASES --json $OUT/torch.json 2>&1 | tail -20
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only $CASES --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG
