await QwenNats.Judge.JudgeHost.Build(args).RunAsync();
