<?php
/*
 * Plugin Name: Legacy Hello
 * Description: wpfarm lab: a line in every page's footer (its presence on the migrated site proves the plugin moved, active).
 * Version: 1.0
 */
add_action( 'wp_footer', function () {
	echo '<p class="legacy-hello">Legacy Hello: ' . esc_html( get_option( 'blogname' ) ) . '</p>';
} );
