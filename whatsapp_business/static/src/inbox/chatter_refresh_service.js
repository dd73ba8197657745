/** Open chatters show new WhatsApp messages without a reload.
 *
 * Odoo has no bus channel per document: the server sends
 * "whatsapp_business/chatter_messages" {threads: [{model, id}]} to the partner
 * channel of the documents' internal followers, and each loaded thread fetches its
 * new messages. Delivery ticks need nothing here: they arrive as
 * "mail.record/insert" updates of the messages. */
import { registry } from "@web/core/registry";

export const whatsappChatterRefreshService = {
    dependencies: ["bus_service", "mail.store"],
    start(env, { bus_service: bus, "mail.store": store }) {
        bus.subscribe("whatsapp_business/chatter_messages", ({ threads }) => {
            for (const { model, id } of threads || []) {
                const thread = store.Thread.get({ model, id });
                if (thread?.isLoaded) {
                    thread.fetchNewMessages();
                }
            }
        });
    },
};

registry
    .category("services")
    .add("whatsapp_business.chatter_refresh", whatsappChatterRefreshService);
