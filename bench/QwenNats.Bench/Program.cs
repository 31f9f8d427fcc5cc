using QwenNats.Bench;

return args.FirstOrDefault() switch
{
    "switch" => await SwitchPropagation.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: QwenNats.Bench switch --nats <url> --ingress <url>[,<url>...] [--switches 100]");
    return 2;
}
