using QwenNats.ServiceDefaults;

namespace QwenNats.Tests.Unit;

public sealed class MetricsBucketsTests
{
    [Theory]
    [InlineData(60)]
    [InlineData(20)]
    [InlineData(600)]
    public void Latency_buckets_reach_the_request_timeout(int seconds)
    {
        var buckets = QwenMetrics.LatencyBucketsUpTo(TimeSpan.FromSeconds(seconds));
        Assert.Equal(0.005, buckets[0]);
        Assert.True(buckets[^1] >= seconds, $"largest bucket {buckets[^1]} s is below the {seconds} s timeout");
        Assert.True(buckets[^2] < seconds);
        Assert.Equal(buckets.Order(), buckets);
        Assert.Equal(buckets.Distinct(), buckets);
    }

    [Fact]
    public void The_alert_thresholds_are_bounds_so_a_p95_against_them_is_exact()
    {
        var buckets = QwenMetrics.LatencyBucketsUpTo(TimeSpan.FromSeconds(60));
        Assert.Contains(3.0, buckets);
        Assert.Contains(5.0, buckets);
        Assert.Equal(60.0, buckets[^1]);
    }
}
