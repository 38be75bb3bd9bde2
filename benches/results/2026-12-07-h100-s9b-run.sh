for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== conformance"; timeout 100 ./.bin/conformance --backend webgpu --adapter vulkan --op gemm_q,attention,attention_ex --cases 48 2>&1 | grep -v XDG | tail -7
echo "== torch"; python3 benches/reference/torch_baseline.py --only gemm_q_,attention_decode --json $OUT/torch.json 2>&1 | tail -9
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only gemm_q_,attention_decode --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG
echo "== decode_row"; BACKEND_GEMM_Q_DECODE_ROW=1 ./.bin/bench --backend webgpu --adapter vulkan --only x4096_n1 --compare $OUT/torch.json 2>&1 | grep -v XDG
