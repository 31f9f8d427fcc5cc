using System.Security.Cryptography;
using NATS.Client.ObjectStore;
using NATS.Client.ObjectStore.Models;

namespace QwenNats.Messaging;

/// <summary>A model file is not what its digest says, or not usable; the message says which and why.</summary>
public sealed class ModelStoreException(string code, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary><c>model_not_found</c>, <c>digest_mismatch</c> or <c>download_failed</c>.</summary>
    public string Code { get; } = code;
}

/// <summary>The result of an upload: the digest (the object's name), the size and whether bytes were sent.</summary>
public sealed record ModelUpload(string Sha256, long SizeBytes, bool Uploaded);

/// <summary>
/// Model distribution over NATS: GGUF files live in the JetStream object store <see cref="Releases.ModelsBucket"/>,
/// each named by the SHA-256 of its content, so a digest names one file everywhere. The object store sends a file
/// in chunks and checks its own digest on the way; <see cref="FetchAsync"/> keeps a local cache of verified files.
/// </summary>
public static class ModelStore
{
    /// <summary>SHA-256 of a file, lowercase hex.</summary>
    public static async Task<string> HashFileAsync(string path, CancellationToken ct)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct));
    }

    /// <summary>The stored object's metadata, or null when no model with that digest was uploaded.</summary>
    public static async Task<ObjectMetadata?> InfoAsync(INatsObjStore store, string sha256, CancellationToken ct)
    {
        try
        {
            var info = await store.GetInfoAsync(sha256, cancellationToken: ct);
            return info.Deleted ? null : info;
        }
        catch (NatsObjNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Checks that the stored object named <paramref name="sha256"/> holds content with that digest; returns its size.</summary>
    public static async Task<long> VerifyStoredAsync(INatsObjStore store, string sha256, CancellationToken ct)
    {
        var info = await InfoAsync(store, sha256, ct)
                   ?? throw new ModelStoreException("model_not_found", $"No model with SHA-256 {sha256} in the object store {Releases.ModelsBucket}; upload it first (qwenctl upload <file.gguf>).");
        var stored = Releases.HexOfObjectDigest(info.Digest);
        if (stored != sha256)
            throw new ModelStoreException("digest_mismatch", $"The object {sha256} in {Releases.ModelsBucket} holds content with SHA-256 {stored ?? info.Digest ?? "unknown"}: it was not uploaded by digest; upload the file again.");
        return (long)info.Size;
    }

    /// <summary>Uploads a model file under its digest; a file already stored (same digest) is not sent again.</summary>
    public static async Task<ModelUpload> UploadAsync(INatsObjStore store, string path, CancellationToken ct)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        var sha = await HashFileAsync(path, ct);
        var size = new FileInfo(path).Length;
        if (await InfoAsync(store, sha, ct) is { } existing && Releases.HexOfObjectDigest(existing.Digest) == sha)
            return new ModelUpload(sha, (long)existing.Size, Uploaded: false);
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        var meta = await store.PutAsync(new ObjectMetadata
        {
            Name = sha,
            Description = Path.GetFileName(path),
        }, stream, leaveOpen: true, ct);
        var stored = Releases.HexOfObjectDigest(meta.Digest);
        if (stored != sha)
            throw new ModelStoreException("digest_mismatch", $"'{path}' changed while it was uploaded (SHA-256 {sha} before, {stored} stored); upload it again.");
        return new ModelUpload(sha, size, Uploaded: true);
    }
}

/// <summary>
/// A worker's local cache of model files, one file per digest (<c>&lt;dir&gt;/&lt;sha256&gt;.gguf</c>). A file enters
/// the cache only after its content's SHA-256 matched the digest it was fetched for: it is written to a partial file
/// first, hashed, then renamed into place, so a download interrupted by a crash leaves only a partial file, which the
/// next fetch deletes and starts again. A digest mismatch deletes the download and throws.
/// </summary>
public sealed class ModelCache
{
    private const string PartialSuffix = ".partial";
    private readonly long _stallAfterBytes;

    /// <param name="directory">Where the models are kept.</param>
    /// <param name="stallAfterBytes">Fault injection (<see cref="FaultOptions.DownloadStallAfterBytes"/>): a download
    /// stops after this many bytes and waits until cancelled; 0: never.</param>
    public ModelCache(string directory, long stallAfterBytes = 0)
    {
        _stallAfterBytes = stallAfterBytes;
        Directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    public string PathOf(string sha256) => Path.Combine(Directory, sha256 + ".gguf");

    public bool Contains(string sha256) => File.Exists(PathOf(sha256));

    /// <summary>Deletes downloads left by a process that stopped mid-way (not those of live processes).</summary>
    public int RemoveStalePartials()
    {
        var removed = 0;
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*" + PartialSuffix))
        {
            var pid = Path.GetFileNameWithoutExtension(file).Split('-').LastOrDefault();
            if (int.TryParse(pid, out var id) && id != Environment.ProcessId && IsAlive(id)) continue;
            try
            {
                File.Delete(file);
                removed++;
            }
            catch (IOException)
            {
            }
        }
        return removed;
    }

    /// <summary>
    /// The cached file for <paramref name="sha256"/>, fetched from <paramref name="store"/> first when it is not cached.
    /// <paramref name="progress"/> hears the bytes written so far.
    /// </summary>
    public async Task<string> FetchAsync(INatsObjStore store, string sha256, CancellationToken ct, IProgress<long>? progress = null)
    {
        if (!Releases.IsSha256(sha256))
            throw new ArgumentException($"'{sha256}' is not a SHA-256 digest (64 lowercase hex digits).", nameof(sha256));
        var target = PathOf(sha256);
        if (File.Exists(target))
        {
            // Cached: kept unless the store says it is another size (a file cut short, e.g. by a power loss before its
            // data reached the disk), which would otherwise fail every load of the release and never be fetched again.
            if (await StoredSizeAsync(store, sha256, ct) is not { } size || size == new FileInfo(target).Length)
                return target;
            File.Delete(target);
        }
        RemoveStalePartials();
        var partial = Path.Combine(Directory, $"{sha256}-{Environment.ProcessId}{PartialSuffix}");
        try
        {
            await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true))
            await using (var counting = new ProgressStream(file, progress, _stallAfterBytes, ct))
            {
                try
                {
                    await store.GetAsync(sha256, counting, leaveOpen: true, ct);
                    await file.FlushAsync(ct);
                    file.Flush(flushToDisk: true); // on the disk before it is renamed into place
                }
                catch (NatsObjNotFoundException e)
                {
                    throw new ModelStoreException("model_not_found", $"No model with SHA-256 {sha256} in the object store {Releases.ModelsBucket}.", e);
                }
                catch (NatsObjException e)
                {
                    throw new ModelStoreException("download_failed", $"Downloading model {sha256}: {e.Message}", e);
                }
            }
            var actual = await ModelStore.HashFileAsync(partial, ct);
            if (actual != sha256)
                throw new ModelStoreException("digest_mismatch", $"Refusing model {sha256}: the downloaded file's SHA-256 is {actual}.");
            File.Move(partial, target, overwrite: true);
            return target;
        }
        finally
        {
            if (File.Exists(partial))
                File.Delete(partial);
        }
    }

    /// <summary>The stored object's size, or null when the store does not have it or cannot be asked now.</summary>
    private static async Task<long?> StoredSizeAsync(INatsObjStore store, string sha256, CancellationToken ct)
    {
        try
        {
            return await ModelStore.InfoAsync(store, sha256, ct) is { } info ? (long)info.Size : null;
        }
        catch (Exception e) when (e is NATS.Client.Core.NatsException or NatsObjException or TimeoutException)
        {
            return null;
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>A write-through stream that reports how many bytes went by.</summary>
    private sealed class ProgressStream(Stream inner, IProgress<long>? progress, long stallAfterBytes, CancellationToken fetch) : Stream
    {
        private long _written;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            Report(count);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken);
            Report(buffer.Length);
            if (stallAfterBytes > 0 && _written >= stallAfterBytes)
            {
                await inner.FlushAsync(cancellationToken);
                // Until the fetch is given up (the worker stops): the object store may pass its own token here.
                using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, fetch);
                await Task.Delay(Timeout.Infinite, either.Token);
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        private void Report(int n)
        {
            _written += n;
            progress?.Report(_written);
        }
    }
}
