// Placeholder dashboard: desk health and the live event stream, reconnecting by itself.
(function () {
  const health = document.getElementById("health");
  const state = document.getElementById("stream-state");
  const list = document.getElementById("events");

  async function refreshHealth() {
    try {
      const response = await fetch("/api/health/");
      health.textContent = JSON.stringify(await response.json(), null, 2);
    } catch (err) {
      health.textContent = "health unavailable: " + err;
    }
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(scheme + "://" + location.host + "/ws/stream/");
    socket.onopen = () => { state.textContent = "connected"; delay = 1000; };
    socket.onmessage = (message) => {
      const item = document.createElement("li");
      item.textContent = message.data;
      list.prepend(item);
      while (list.children.length > 50) list.lastChild.remove();
    };
    socket.onclose = () => {
      state.textContent = "disconnected, retrying…";
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  refreshHealth();
  setInterval(refreshHealth, 5000);
  connect(1000);
})();
