using QwenNats.Bench;

return args.FirstOrDefault() switch
{
    "switch" => await SwitchPropagation.RunAsync(args[1..]),
    "soak" => await Soak.RunAsync(args[1..]),
    "model" => MakeModel.Run(args[1..]),
    "perf" => await Perf.RunAsync(args[1..]),
    "deploy" => await DeployTime.RunAsync(args[1..]),
    "hop" => await Hop.RunAsync(args[1..]),
    "swap" => await SwapLatency.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: QwenNats.Bench switch --nats <url> --ingress <url>[,<url>...] [--switches 100]");
    Console.Error.WriteLine("       QwenNats.Bench model --out <dir> [--shape qwen1.5-0.5b|miniature] [--quant q4_k_m,q8_0]");
    Console.Error.WriteLine("       QwenNats.Bench perf --tiny <gguf> --qwen <q4_k_m gguf> [--qwen8 <q8_0 gguf>] [--threads 1] [--quick true]");
    Console.Error.WriteLine("       QwenNats.Bench hop --tiny <gguf> [--requests 1000] [--slots 2] [--threads 1]");
    Console.Error.WriteLine("       QwenNats.Bench deploy --model <gguf>[,<gguf>...] [--repeat 3] [--threads 1]");
    Console.Error.WriteLine("       QwenNats.Bench swap --live <gguf>[,<gguf>...] --candidate <gguf>[,<gguf>...] [--swaps 3] [--quiet 10] [--settle 1] [--clients 2] [--threads 1] [--switch-mode auto]");
    Console.Error.WriteLine("       QwenNats.Bench soak --nats <url> --ingress <url> [--seconds 600] [--warmup 30] [--clients 4] [--cycle 20] [--max-growth 10] [--pids .run/pids]");
    return 2;
}
