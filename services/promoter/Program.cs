await QwenNats.Promoter.PromoterHost.Build(args).RunAsync();
