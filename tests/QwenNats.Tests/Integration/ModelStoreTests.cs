using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using NATS.Client.ObjectStore.Models;
using QwenNats.Messaging;
using QwenNats.Tests.Infrastructure;

namespace QwenNats.Tests.Integration;

/// <summary>The model store and a worker's cache on a real nats-server's object store.</summary>
public sealed class ModelStoreTests : IAsyncLifetime
{
    private NatsServer _nats = null!;
    private NATS.Client.Core.NatsConnection _connection = null!;
    private INatsObjStore _store = null!;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"qwen-models-{Guid.NewGuid():N}");

    public async Task InitializeAsync()
    {
        _nats = await NatsServer.StartAsync();
        _connection = await Ctl.ConnectAsync(_nats);
        _store = await new NatsObjContext(new NatsJSContext(_connection)).CreateObjectStoreAsync(new NatsObjConfig(Releases.ModelsBucket) { Storage = NatsObjStorageType.Memory });
    }

    public async Task DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _nats.DisposeAsync();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_model_is_stored_by_digest_once_fetched_verified_and_served_from_the_cache_after()
    {
        var first = await ModelStore.UploadAsync(_store, Testing.Paths.Model, CancellationToken.None);
        Assert.True(first.Uploaded);
        Assert.Equal(await ModelStore.HashFileAsync(Testing.Paths.Model, CancellationToken.None), first.Sha256);
        Assert.False((await ModelStore.UploadAsync(_store, Testing.Paths.Model, CancellationToken.None)).Uploaded);
        Assert.Equal(new FileInfo(Testing.Paths.Model).Length, await ModelStore.VerifyStoredAsync(_store, first.Sha256, CancellationToken.None));

        var cache = new ModelCache(_dir);
        long progress = 0;
        var path = await cache.FetchAsync(_store, first.Sha256, CancellationToken.None, new Progress<long>(n => progress = n));
        Assert.Equal(first.Sha256, await ModelStore.HashFileAsync(path, CancellationToken.None));
        Assert.True(cache.Contains(first.Sha256));

        // A cached file cut short (its data never reached the disk) is fetched again, not loaded and failed forever.
        var full = new FileInfo(path).Length;
        await using (var cut = new FileStream(path, FileMode.Open, FileAccess.Write))
            cut.SetLength(full / 2);
        Assert.Equal(path, await cache.FetchAsync(_store, first.Sha256, CancellationToken.None));
        Assert.Equal(full, new FileInfo(path).Length);
        Assert.Equal(first.Sha256, await ModelStore.HashFileAsync(path, CancellationToken.None));

        // Served from the cache: the store no longer needs to have it.
        await _store.DeleteAsync(first.Sha256);
        Assert.Equal(path, await cache.FetchAsync(_store, first.Sha256, CancellationToken.None));
        Assert.True(progress > 0);
    }

    [Fact]
    public async Task Content_that_is_not_what_its_digest_says_is_refused_loudly_and_never_cached()
    {
        var claimed = new string('c', 64);
        await using (var file = File.OpenRead(Testing.Paths.Model))
            await _store.PutAsync(new ObjectMetadata { Name = claimed }, file);
        var stored = await Assert.ThrowsAsync<ModelStoreException>(() => ModelStore.VerifyStoredAsync(_store, claimed, CancellationToken.None));
        Assert.Equal("digest_mismatch", stored.Code);

        var cache = new ModelCache(_dir);
        var fetched = await Assert.ThrowsAsync<ModelStoreException>(() => cache.FetchAsync(_store, claimed, CancellationToken.None));
        Assert.Equal("digest_mismatch", fetched.Code);
        Assert.Contains(claimed, fetched.Message);
        Assert.Empty(Directory.GetFiles(_dir));

        var missing = await Assert.ThrowsAsync<ModelStoreException>(() => cache.FetchAsync(_store, new string('d', 64), CancellationToken.None));
        Assert.Equal("model_not_found", missing.Code);
        Assert.Empty(Directory.GetFiles(_dir));
    }
}
