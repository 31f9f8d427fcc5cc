using Microsoft.Playwright;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// Headless Chromium driven by Playwright, using the system's browser (<c>QWEN_CHROMIUM</c>, else
/// <c>/usr/bin/chromium</c>, Debian's package): Playwright never downloads one.
/// </summary>
public sealed class Browser : IAsyncDisposable
{
    private readonly IPlaywright _playwright;

    private Browser(IPlaywright playwright, IBrowser browser) => (_playwright, Instance) = (playwright, browser);

    public IBrowser Instance { get; }

    public static string ExecutablePath
    {
        get
        {
            var path = Environment.GetEnvironmentVariable("QWEN_CHROMIUM");
            if (string.IsNullOrEmpty(path)) path = "/usr/bin/chromium";
            if (!File.Exists(path))
                throw new FileNotFoundException($"Chromium is missing at {path}: install Debian's chromium (apt-get install chromium) or set QWEN_CHROMIUM.", path);
            return path;
        }
    }

    public static async Task<Browser> LaunchAsync()
    {
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ExecutablePath,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"],
            });
            return new Browser(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    public async Task<IPage> OpenAsync(Uri address, Action<IPage>? beforeLoad = null)
    {
        var context = await Instance.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        context.SetDefaultTimeout(20_000);
        var page = await context.NewPageAsync();
        beforeLoad?.Invoke(page);
        await page.GotoAsync(address.ToString());
        await page.WaitForSelectorAsync("body[data-ready=true]");
        return page;
    }

    /// <summary>Screenshots go to <c>QWEN_ARTIFACTS</c> (default <c>artifacts/</c> in the repository), one folder per test.</summary>
    public static async Task ScreenshotAsync(IPage page, string test, string name)
    {
        var root = Environment.GetEnvironmentVariable("QWEN_ARTIFACTS");
        if (string.IsNullOrEmpty(root)) root = Path.Combine(Paths.RepoRoot, "artifacts");
        var dir = Path.Combine(root, "console", test);
        Directory.CreateDirectory(dir);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(dir, name + ".png"), FullPage = true });
    }

    public async ValueTask DisposeAsync()
    {
        await Instance.DisposeAsync();
        _playwright.Dispose();
    }
}
